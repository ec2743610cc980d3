//! `cryodet preprocess`: bilateral filter + histogram equalization of one image (the study's preprocessing).

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> crate::Result<()> {
    Err(crate::Error::invalid("`cryodet preprocess` is not implemented yet"))
}
