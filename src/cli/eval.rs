//! `cryodet eval`: AP at IoU 0.5..0.9, precision, recall, F1, mIoU, per-tomogram tables and plots.

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> crate::Result<()> {
    Err(crate::Error::invalid(
        "`cryodet eval` is not implemented yet",
    ))
}
