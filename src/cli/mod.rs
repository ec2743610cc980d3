//! The command-line interface: one file per subcommand, each with its `Args` and `run`.

pub mod detect;
pub mod eval;
pub mod grad;
pub mod info;
pub mod link;
pub mod preprocess;
pub mod synth;
pub mod trace;
pub mod train;

/// How an image becomes the network input: `detect` and `eval --weights` share these options.
#[derive(clap::Args, Debug, Clone)]
pub struct InputScaleArgs {
    /// Short side of the network input in pixels (default: the size the model was trained at,
    /// from its metadata, else 600).
    #[arg(long)]
    pub size: Option<usize>,
    /// Upper bound of the long side (default 1000/600 of the short side).
    #[arg(long)]
    pub max_size: Option<usize>,
    /// nm per pixel of the input files, overriding what they record (MRC header voxel size,
    /// TIFF resolution tags or ImageJ description, PNG pHYs). With a known pixel size and a
    /// model that records its own (`pixel_size_nm`), the image is resampled to the model's pixel
    /// size; otherwise --size applies.
    #[arg(long, value_name = "NM")]
    pub pixel_size: Option<f32>,
    /// Cap of the network input's long side when the pixel size sets the scale.
    #[arg(long, value_name = "PX", default_value_t = crate::pipeline::MAX_INPUT)]
    pub max_input: usize,
    /// Skip the study's bilateral filter + histogram equalization (models trained without it
    /// skip it by default, from their metadata).
    #[arg(long)]
    pub no_preprocess: bool,
}
