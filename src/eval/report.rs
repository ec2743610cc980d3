pub fn write_report() {}
