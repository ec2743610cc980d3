//! `cryodet synth`: generate synthetic cryo-ET images with LabelImg ground truth.

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> crate::Result<()> {
    Err(crate::Error::invalid(
        "`cryodet synth` is not implemented yet",
    ))
}
