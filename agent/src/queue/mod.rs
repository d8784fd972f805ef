//! placeholder until the queue lands
