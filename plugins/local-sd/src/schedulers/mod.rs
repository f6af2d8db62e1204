//! Noise schedulers with diffusers' numerics, configured from `scheduler/scheduler_config.json`
//! the way `SchedulerClass.from_config(config)` does: keys the file has win, every other
//! setting takes the chosen scheduler's own default.

use std::path::Path;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub mod ddim;
pub mod dpm_solver_multistep;
pub mod euler;
pub mod euler_ancestral;
pub mod pndm;

/// The schedulers the engine implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchedulerKind {
    Ddim,
    Pndm,
    Euler,
    EulerAncestral,
    DpmPp2m,
    DpmPp2mKarras,
}

impl SchedulerKind {
    pub const ALL: [Self; 6] = [
        Self::Ddim,
        Self::Pndm,
        Self::Euler,
        Self::EulerAncestral,
        Self::DpmPp2m,
        Self::DpmPp2mKarras,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Ddim => "ddim",
            Self::Pndm => "pndm",
            Self::Euler => "euler",
            Self::EulerAncestral => "euler-a",
            Self::DpmPp2m => "dpm++2m",
            Self::DpmPp2mKarras => "dpm++2m-karras",
        }
    }

    /// The scheduler a config file's `_class_name` names, if the engine has it.
    pub fn from_class_name(class: &str) -> Option<Self> {
        Some(match class {
            "DDIMScheduler" => Self::Ddim,
            "PNDMScheduler" => Self::Pndm,
            "EulerDiscreteScheduler" => Self::Euler,
            "EulerAncestralDiscreteScheduler" => Self::EulerAncestral,
            "DPMSolverMultistepScheduler" => Self::DpmPp2m,
            _ => return None,
        })
    }
}

impl std::str::FromStr for SchedulerKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let norm: String = s
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '+')
            .collect();
        Ok(match norm.as_str() {
            "ddim" => Self::Ddim,
            "pndm" | "plms" => Self::Pndm,
            "euler" => Self::Euler,
            "eulera" | "eulerancestral" => Self::EulerAncestral,
            "dpm++2m" | "dpmpp2m" | "dpmsolvermultistep" => Self::DpmPp2m,
            "dpm++2mkarras" | "dpmpp2mkarras" => Self::DpmPp2mKarras,
            _ => {
                return Err(Error::InvalidRequest(format!(
                    "unknown scheduler `{s}`; choose one of ddim, pndm, euler, euler-a, dpm++2m, dpm++2m-karras"
                )));
            }
        })
    }
}

/// `scheduler_config.json` as stored; `None` means "not in the file".
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SchedulerConfigFile {
    #[serde(rename = "_class_name", default)]
    pub class_name: Option<String>,
    pub num_train_timesteps: Option<usize>,
    pub beta_start: Option<f64>,
    pub beta_end: Option<f64>,
    pub beta_schedule: Option<String>,
    pub trained_betas: Option<Vec<f64>>,
    pub prediction_type: Option<String>,
    pub timestep_spacing: Option<String>,
    pub steps_offset: Option<usize>,
    pub set_alpha_to_one: Option<bool>,
    pub clip_sample: Option<bool>,
    pub clip_sample_range: Option<f64>,
    pub skip_prk_steps: Option<bool>,
    pub use_karras_sigmas: Option<bool>,
    pub solver_order: Option<usize>,
    pub algorithm_type: Option<String>,
    pub solver_type: Option<String>,
    pub lower_order_final: Option<bool>,
    pub euler_at_final: Option<bool>,
    pub final_sigmas_type: Option<String>,
    pub interpolation_type: Option<String>,
    pub timestep_type: Option<String>,
    pub rescale_betas_zero_snr: Option<bool>,
    pub thresholding: Option<bool>,
}

impl SchedulerConfigFile {
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::config::read_json(path, "scheduler config")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prediction {
    Epsilon,
    VPrediction,
    Sample,
}

/// How inference timesteps are spread over the training schedule (diffusers'
/// `timestep_spacing`). Turbo models use `trailing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Spacing {
    Leading,
    Trailing,
    Linspace,
}

impl Spacing {
    pub fn name(self) -> &'static str {
        match self {
            Self::Leading => "leading",
            Self::Trailing => "trailing",
            Self::Linspace => "linspace",
        }
    }
}

impl std::str::FromStr for Spacing {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "leading" => Ok(Self::Leading),
            "trailing" => Ok(Self::Trailing),
            "linspace" => Ok(Self::Linspace),
            _ => Err(Error::InvalidRequest(format!(
                "unknown timestep spacing `{s}`; use leading, trailing or linspace"
            ))),
        }
    }
}

/// The settings every scheduler shares, with the class's defaults applied.
#[derive(Debug, Clone)]
pub struct Common {
    pub num_train_timesteps: usize,
    pub prediction: Prediction,
    pub spacing: Spacing,
    pub steps_offset: usize,
    /// `alphas_cumprod` in f32, as torch.cumprod computes it.
    pub alphas_cumprod: Vec<f32>,
}

/// Class defaults that differ between schedulers.
pub(crate) struct Defaults {
    pub beta_schedule: &'static str,
    pub beta_start: f64,
    pub beta_end: f64,
    pub spacing: &'static str,
}

impl Common {
    pub(crate) fn resolve(f: &SchedulerConfigFile, d: Defaults) -> Result<Self> {
        if f.rescale_betas_zero_snr == Some(true) {
            return Err(Error::Unsupported(
                "rescale_betas_zero_snr in scheduler_config.json".into(),
            ));
        }
        if f.thresholding == Some(true) {
            return Err(Error::Unsupported(
                "thresholding in scheduler_config.json".into(),
            ));
        }
        let n = f.num_train_timesteps.unwrap_or(1000);
        let start = f.beta_start.unwrap_or(d.beta_start);
        let end = f.beta_end.unwrap_or(d.beta_end);
        let betas: Vec<f32> = match (
            &f.trained_betas,
            f.beta_schedule.as_deref().unwrap_or(d.beta_schedule),
        ) {
            (Some(b), _) => b.iter().map(|&x| x as f32).collect(),
            (None, "linear") => linspace_f32(start, end, n),
            (None, "scaled_linear") => linspace_f32(start.sqrt(), end.sqrt(), n)
                .into_iter()
                .map(|b| b * b)
                .collect(),
            (None, "squaredcos_cap_v2") => (0..n)
                .map(|i| {
                    let bar = |t: f64| {
                        ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
                            .cos()
                            .powi(2)
                    };
                    let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
                    (1.0 - bar(t2) / bar(t1)).min(0.999) as f32
                })
                .collect(),
            (None, other) => return Err(Error::Unsupported(format!("beta_schedule `{other}`"))),
        };
        let mut acc = 1.0f32;
        let alphas_cumprod = betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect();
        let prediction = match f.prediction_type.as_deref().unwrap_or("epsilon") {
            "epsilon" => Prediction::Epsilon,
            "v_prediction" => Prediction::VPrediction,
            "sample" => Prediction::Sample,
            other => return Err(Error::Unsupported(format!("prediction_type `{other}`"))),
        };
        let spacing = match f.timestep_spacing.as_deref().unwrap_or(d.spacing) {
            "leading" => Spacing::Leading,
            "trailing" => Spacing::Trailing,
            "linspace" => Spacing::Linspace,
            other => return Err(Error::Unsupported(format!("timestep_spacing `{other}`"))),
        };
        Ok(Self {
            num_train_timesteps: n,
            prediction,
            spacing,
            steps_offset: f.steps_offset.unwrap_or(0),
            alphas_cumprod,
        })
    }

    /// `((1 - ᾱ) / ᾱ)^½` per training timestep, in f32 as torch computes it.
    pub fn train_sigmas(&self) -> Vec<f32> {
        self.alphas_cumprod
            .iter()
            .map(|a| ((1.0 - a) / a).sqrt())
            .collect()
    }

    /// Integer timesteps for DDIM/PNDM-style schedulers (high to low).
    pub fn discrete_timesteps(&self, steps: usize) -> Vec<i64> {
        let n = self.num_train_timesteps;
        match self.spacing {
            Spacing::Linspace => linspace_f64(0.0, (n - 1) as f64, steps)
                .into_iter()
                .rev()
                .map(|t| round_half_even(t) as i64)
                .collect(),
            Spacing::Leading => {
                let ratio = n / steps;
                (0..steps)
                    .rev()
                    .map(|i| (i * ratio + self.steps_offset) as i64)
                    .collect()
            }
            Spacing::Trailing => {
                let ratio = n as f64 / steps as f64;
                arange_desc(n as f64, ratio)
                    .into_iter()
                    .map(|t| round_half_even(t) as i64 - 1)
                    .collect()
            }
        }
    }
}

/// `torch.linspace(start, end, n, dtype=float32)`: torch fills the first half forward from
/// `start` and the second half backward from `end`, in f32.
pub(crate) fn linspace_f32(start: f64, end: f64, n: usize) -> Vec<f32> {
    if n == 1 {
        return vec![start as f32];
    }
    let (s, e) = (start as f32, end as f32);
    let step = (e - s) / (n - 1) as f32;
    let half = n / 2;
    (0..n)
        .map(|i| {
            if i < half {
                s + step * i as f32
            } else {
                e - step * (n - 1 - i) as f32
            }
        })
        .collect()
}

/// `np.linspace(start, end, n)` in f64.
pub(crate) fn linspace_f64(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f64;
    let mut v: Vec<f64> = (0..n).map(|i| start + i as f64 * step).collect();
    v[n - 1] = end;
    v
}

/// `np.arange(start, 0, -step)`.
pub(crate) fn arange_desc(start: f64, step: f64) -> Vec<f64> {
    let count = (start / step).ceil() as usize;
    (0..count).map(|i| start - i as f64 * step).collect()
}

/// numpy rounds half to even.
pub(crate) fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

/// `np.interp(x, arange(len(ys)), ys)`.
pub(crate) fn interp(x: f64, ys: &[f32]) -> f64 {
    if x <= 0.0 {
        return f64::from(ys[0]);
    }
    let last = ys.len() - 1;
    if x >= last as f64 {
        return f64::from(ys[last]);
    }
    let i = x.floor() as usize;
    let w = x - i as f64;
    f64::from(ys[i]) * (1.0 - w) + f64::from(ys[i + 1]) * w
}

/// Gaussian noise of a given shape, drawn from the caller's seeded generator (schedulers that
/// add noise while sampling call it).
pub type NoiseFn<'a> = dyn FnMut([usize; 4]) -> Tensor<4> + 'a;

/// One sampling method: timesteps, input scaling, the update step, and noising for img2img.
pub trait Scheduler: Send {
    /// The timesteps the UNet sees, one per step.
    fn timesteps(&self) -> &[f64];
    /// The scale of the initial noise.
    fn init_noise_sigma(&self) -> f64;
    /// Scales the UNet input at step `i` (Euler-type schedulers divide by `(σ²+1)^½`).
    fn scale_model_input(&self, sample: Tensor<4>, i: usize) -> Tensor<4>;
    /// The sample after step `i` given the model output at step `i`.
    fn step(
        &mut self,
        model_output: Tensor<4>,
        i: usize,
        sample: Tensor<4>,
        noise: &mut NoiseFn<'_>,
    ) -> Tensor<4>;
    /// Noises clean latents to the level of step `i` (img2img, inpainting).
    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, i: usize) -> Tensor<4>;
}

/// Builds the scheduler `kind` for `steps` steps from a model's scheduler config, optionally
/// with another timestep spacing (as `from_config(config, timestep_spacing=...)`).
pub fn build(
    kind: SchedulerKind,
    config: &SchedulerConfigFile,
    steps: usize,
    spacing: Option<Spacing>,
) -> Result<Box<dyn Scheduler>> {
    let overridden;
    let config = match spacing {
        Some(sp) => {
            overridden = SchedulerConfigFile {
                timestep_spacing: Some(sp.name().to_string()),
                ..config.clone()
            };
            &overridden
        }
        None => config,
    };
    if steps == 0 {
        return Err(Error::InvalidRequest("steps must be at least 1".into()));
    }
    Ok(match kind {
        SchedulerKind::Ddim => Box::new(ddim::DdimScheduler::new(config, steps)?),
        SchedulerKind::Pndm => Box::new(pndm::PndmScheduler::new(config, steps)?),
        SchedulerKind::Euler => Box::new(euler::EulerScheduler::new(config, steps)?),
        SchedulerKind::EulerAncestral => Box::new(euler_ancestral::EulerAncestralScheduler::new(
            config, steps,
        )?),
        SchedulerKind::DpmPp2m => Box::new(dpm_solver_multistep::DpmSolverMultistepScheduler::new(
            config, steps, false,
        )?),
        SchedulerKind::DpmPp2mKarras => Box::new(
            dpm_solver_multistep::DpmSolverMultistepScheduler::new(config, steps, true)?,
        ),
    })
}
