//! Integration tests of the eeg-edf reader and writer.

mod common;
mod corrupt;
mod digital;
mod fixtures;
mod fuzz;
mod units;
mod writer;
