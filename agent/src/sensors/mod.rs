//! placeholder until the sensors land
#![allow(dead_code, unused_variables)]
use std::path::PathBuf;
#[derive(Debug, Clone)]
pub struct SensorConfig {
    pub host_root: PathBuf,
    pub services: Vec<String>,
    pub systemctl: PathBuf,
    pub net_exclude: Vec<String>,
}
pub struct Sensors;
impl Sensors {
    pub fn new(cfg: SensorConfig) -> Sensors {
        todo!()
    }
    pub fn sample(
        &mut self,
        stamp: &clock::Stamp,
    ) -> (picket_protocol::Sample, Vec<picket_protocol::EventKind>) {
        todo!()
    }
}
pub mod clock {
    pub struct Stamp {
        pub ts: u64,
        pub mono: u64,
        pub boot: String,
        pub sync: bool,
    }
    pub trait Clock: Send {
        fn stamp(&mut self) -> Stamp;
    }
    pub struct SystemClock;
    impl SystemClock {
        pub fn new(root: &std::path::Path) -> Self {
            todo!()
        }
    }
    impl Clock for SystemClock {
        fn stamp(&mut self) -> Stamp {
            todo!()
        }
    }
}
pub mod identity {
    use std::path::Path;
    #[derive(Debug, thiserror::Error)]
    #[error("x")]
    pub struct IdentityError;
    pub fn model(root: &Path) -> Option<String> {
        todo!()
    }
    pub fn default_device_id(root: &Path) -> Result<picket_protocol::DeviceId, IdentityError> {
        todo!()
    }
    pub fn boot_id(root: &Path) -> Option<String> {
        todo!()
    }
}
