//! The collector's integration tests, against real servers started by the
//! tests on 127.0.0.1 port 0.

mod http_sink;
mod notify;
mod smtp_sink;
