//! `cryodet detect`: detect organelles in images, MRC stacks or directories.

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> crate::Result<()> {
    Err(crate::Error::invalid(
        "`cryodet detect` is not implemented yet",
    ))
}
