//! Simulated hardware for machines without it (this crate's tests, and any
//! test of code built on the agent): a GPIO chip and a LED that records
//! every change with its time. Only hardware seams are simulated here.

pub mod gpio;
pub mod led;
