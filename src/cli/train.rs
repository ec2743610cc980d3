//! `cryodet train`: train on a LabelImg (Pascal VOC) dataset.

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> crate::Result<()> {
    Err(crate::Error::invalid(
        "`cryodet train` is not implemented yet",
    ))
}
