//! `cryodet`: the command-line tool. Each subcommand lives in `src/cli/<name>.rs`.

use clap::{Parser, Subcommand};
use cryodet::cli;

#[derive(Parser, Debug)]
#[command(
    name = "cryodet",
    version,
    about = "Faster R-CNN for organelles in cryo-ET, on the CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Detect organelles in images, MRC stacks or directories of images.
    Detect(cli::detect::Args),
    /// Dump every intermediate tensor of one forward pass (compare with PyTorch).
    Trace(cli::trace::Args),
    /// Denoise and equalize one image (bilateral filter + histogram equalization).
    Preprocess(cli::preprocess::Args),
    /// Describe an image or MRC file: size, bit depth, intensity range, SNR estimate.
    Info(cli::info::Args),
    /// Train on a LabelImg (Pascal VOC) dataset.
    Train(cli::train::Args),
    /// Losses and gradients for one image (compare with torch autograd).
    Grad(cli::grad::Args),
    /// Evaluate predictions against LabelImg ground truth (AP, F1, mIoU, plots).
    Eval(cli::eval::Args),
    /// Generate synthetic cryo-ET images with ground truth.
    Synth(cli::synth::Args),
    /// Link a stack's per-slice detections (NAME.json from detect) into 3D objects again.
    Link(cli::link::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Detect(a) => cli::detect::run(a),
        Command::Trace(a) => cli::trace::run(a),
        Command::Preprocess(a) => cli::preprocess::run(a),
        Command::Info(a) => cli::info::run(a),
        Command::Train(a) => cli::train::run(a),
        Command::Grad(a) => cli::grad::run(a),
        Command::Eval(a) => cli::eval::run(a),
        Command::Synth(a) => cli::synth::run(a),
        Command::Link(a) => cli::link::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
