//! Pascal VOC XML as LabelImg reads and writes it.
