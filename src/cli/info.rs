//! `cryodet info`: describe an image or MRC file: size, bit depth, intensity range, SNR estimate.

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> crate::Result<()> {
    Err(crate::Error::invalid("`cryodet info` is not implemented yet"))
}
