//! Detection results as files: JSON (one per image or stack), CSV rows; the schema `detect` writes and `eval` reads.
