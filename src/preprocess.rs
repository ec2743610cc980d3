//! The study's preprocessing: bilateral filter, histogram equalization; Gaussian filter; SNR.
