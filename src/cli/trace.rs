//! `cryodet trace`: dump every intermediate tensor of one forward pass, to compare with PyTorch.

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> crate::Result<()> {
    Err(crate::Error::invalid("`cryodet trace` is not implemented yet"))
}
