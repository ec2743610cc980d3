//! safetensors weight files under torchvision names.
