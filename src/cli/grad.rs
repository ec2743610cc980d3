//! `cryodet grad`: losses and gradients of one image, to compare with torch autograd.

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> crate::Result<()> {
    Err(crate::Error::invalid(
        "`cryodet grad` is not implemented yet",
    ))
}
