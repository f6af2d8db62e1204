//! Choosing where the engine runs: the best GPU through wgpu (Vulkan, Metal, DX12), a named
//! adapter, or Burn's pure-Rust CPU backend.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use burn::tensor::{Device, DeviceKind};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What the user asked for with `--device`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceChoice {
    /// A discrete GPU, else an integrated one, else the CPU.
    #[default]
    Auto,
    /// Burn's CPU backend (no GPU driver needed).
    Cpu,
    /// One adapter: its index in [`list_adapters`] or a case-insensitive part of its name.
    Adapter(String),
}

impl std::str::FromStr for DeviceChoice {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "" | "auto" => Self::Auto,
            "cpu" => Self::Cpu,
            _ => Self::Adapter(s.to_string()),
        })
    }
}

pub use crate::worker::protocol::AdapterInfo;

fn block_on<F: Future>(future: F) -> F::Output {
    // wgpu's native adapter enumeration completes on first poll; loop defensively anyway.
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

fn kind_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete",
        wgpu::DeviceType::IntegratedGpu => "integrated",
        wgpu::DeviceType::VirtualGpu => "virtual",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    }
}

/// Every GPU adapter wgpu finds, in the order Burn indexes them.
pub fn list_adapters() -> Vec<AdapterInfo> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapters = block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
    adapters
        .iter()
        .enumerate()
        .map(|(index, a)| {
            let info = a.get_info();
            AdapterInfo {
                index,
                name: info.name,
                kind: kind_name(info.device_type).to_string(),
                backend: format!("{:?}", info.backend),
                driver: info.driver,
            }
        })
        .collect()
}

/// Burn's device for adapter `info`: wgpu picks adapters by kind and index within that kind.
fn burn_device(adapters: &[AdapterInfo], info: &AdapterInfo) -> Device {
    let nth = adapters
        .iter()
        .filter(|a| a.kind == info.kind && a.index < info.index)
        .count();
    let kind = match info.kind.as_str() {
        "discrete" => DeviceKind::DiscreteGpu(nth),
        "integrated" => DeviceKind::IntegratedGpu(nth),
        "virtual" => DeviceKind::VirtualGpu(nth),
        "cpu" => DeviceKind::Cpu,
        _ => DeviceKind::DefaultDevice,
    };
    Device::wgpu(kind)
}

/// The device for a choice, and a line naming it for logs and the UI.
pub fn select(choice: &DeviceChoice) -> Result<(Device, String)> {
    match choice {
        DeviceChoice::Cpu => Ok((Device::flex(), "CPU".to_string())),
        DeviceChoice::Auto => {
            let adapters = list_adapters();
            for kind in ["discrete", "integrated", "virtual"] {
                if let Some(a) = adapters.iter().find(|a| a.kind == kind) {
                    return Ok((
                        burn_device(&adapters, a),
                        format!("{} ({}, {})", a.name, a.kind, a.backend),
                    ));
                }
            }
            Ok((Device::flex(), "CPU (no GPU adapter found)".to_string()))
        }
        DeviceChoice::Adapter(wanted) => {
            let adapters = list_adapters();
            let found = match wanted.parse::<usize>() {
                Ok(i) => adapters.iter().find(|a| a.index == i),
                Err(_) => {
                    let w = wanted.to_lowercase();
                    adapters.iter().find(|a| a.name.to_lowercase().contains(&w))
                }
            };
            let a = found.ok_or_else(|| Error::NoSuchDevice(wanted.clone()))?;
            Ok((
                burn_device(&adapters, a),
                format!("{} ({}, {})", a.name, a.kind, a.backend),
            ))
        }
    }
}

/// The first wgpu adapter of any kind, software rasterizers included (tests use lavapipe).
pub fn first_wgpu_device() -> Option<Device> {
    let adapters = list_adapters();
    ["discrete", "integrated", "virtual", "cpu", "other"]
        .iter()
        .find_map(|k| adapters.iter().find(|a| a.kind == *k))
        .map(|a| burn_device(&adapters, a))
}
