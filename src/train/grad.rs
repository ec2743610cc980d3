//! grad
