//! placeholder until the sensors land
