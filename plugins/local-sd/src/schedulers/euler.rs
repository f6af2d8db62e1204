//! diffusers' `EulerDiscreteScheduler` (no churn), and the sigma/timestep schedule it shares
//! with `EulerAncestralDiscreteScheduler`.

use burn::tensor::Tensor;

use super::{
    Common, Defaults, NoiseFn, Prediction, Scheduler, SchedulerConfigFile, Spacing, arange_desc,
    interp, linspace_f64, round_half_even,
};
use crate::error::{Error, Result};

/// Float timesteps and the sigma at each step (plus the final sigma, 0).
#[derive(Debug, Clone)]
pub(crate) struct SigmaSchedule {
    pub timesteps: Vec<f64>,
    pub sigmas: Vec<f32>,
}

impl SigmaSchedule {
    pub(crate) fn new(common: &Common, steps: usize, karras: bool) -> Self {
        let n = common.num_train_timesteps;
        let timesteps: Vec<f64> = match common.spacing {
            Spacing::Linspace => linspace_f64(0.0, (n - 1) as f64, steps)
                .into_iter()
                .rev()
                .map(|t| t as f32 as f64)
                .collect(),
            Spacing::Leading => {
                let ratio = n / steps;
                (0..steps)
                    .rev()
                    .map(|i| (i * ratio + common.steps_offset) as f64)
                    .collect()
            }
            Spacing::Trailing => {
                let ratio = n as f64 / steps as f64;
                arange_desc(n as f64, ratio)
                    .into_iter()
                    .map(|t| round_half_even(t) - 1.0)
                    .collect()
            }
        };
        let train = common.train_sigmas();
        let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| interp(t, &train)).collect();
        let mut timesteps = timesteps;
        if karras {
            sigmas = karras_sigmas(sigmas[sigmas.len() - 1], sigmas[0], steps);
            let log_sigmas: Vec<f64> = train.iter().map(|&s| f64::from(s).ln()).collect();
            timesteps = sigmas.iter().map(|&s| sigma_to_t(s, &log_sigmas)).collect();
        }
        let mut sigmas: Vec<f32> = sigmas.into_iter().map(|s| s as f32).collect();
        sigmas.push(0.0);
        Self {
            timesteps: timesteps.into_iter().map(|t| t as f32 as f64).collect(),
            sigmas,
        }
    }

    pub(crate) fn init_noise_sigma(&self, spacing: Spacing) -> f64 {
        let max = self.sigmas.iter().copied().fold(0.0f32, f32::max);
        match spacing {
            Spacing::Linspace | Spacing::Trailing => f64::from(max),
            Spacing::Leading => f64::from((max * max + 1.0).sqrt()),
        }
    }
}

/// Karras et al. (2022) sigmas with rho = 7 between the schedule's extremes.
pub(crate) fn karras_sigmas(sigma_min: f64, sigma_max: f64, steps: usize) -> Vec<f64> {
    let rho = 7.0;
    let (min_inv, max_inv) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    linspace_f64(0.0, 1.0, steps)
        .into_iter()
        .map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho))
        .collect()
}

/// diffusers' `_sigma_to_t`: the fractional training timestep of a sigma, interpolating in
/// log-sigma.
pub(crate) fn sigma_to_t(sigma: f64, log_sigmas: &[f64]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    let count = log_sigmas.iter().filter(|&&l| log_sigma - l >= 0.0).count();
    let low = count.saturating_sub(1).min(log_sigmas.len() - 2);
    let (lo, hi) = (log_sigmas[low], log_sigmas[low + 1]);
    let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

/// The denoised estimate from the model output at noise level `sigma`.
pub(crate) fn predict_x0(
    prediction: Prediction,
    model_output: Tensor<4>,
    sample: Tensor<4>,
    sigma: f32,
) -> Tensor<4> {
    match prediction {
        Prediction::Epsilon => sample - model_output * sigma,
        Prediction::VPrediction => {
            let s2 = sigma * sigma + 1.0;
            model_output * (-sigma / s2.sqrt()) + sample / s2
        }
        Prediction::Sample => model_output,
    }
}

#[derive(Debug, Clone)]
pub struct EulerScheduler {
    common: Common,
    schedule: SigmaSchedule,
    begin: usize,
}

pub(crate) fn euler_defaults() -> Defaults {
    Defaults {
        beta_schedule: "linear",
        beta_start: 1e-4,
        beta_end: 0.02,
        spacing: "linspace",
    }
}

impl EulerScheduler {
    pub fn new(f: &SchedulerConfigFile, steps: usize) -> Result<Self> {
        let common = Common::resolve(f, euler_defaults())?;
        if f.interpolation_type
            .as_deref()
            .is_some_and(|t| t != "linear")
        {
            return Err(Error::Unsupported(
                "Euler interpolation_type other than linear".into(),
            ));
        }
        if f.timestep_type.as_deref().is_some_and(|t| t != "discrete") {
            return Err(Error::Unsupported(
                "continuous timesteps (timestep_type)".into(),
            ));
        }
        if f.final_sigmas_type.as_deref().is_some_and(|t| t != "zero") {
            return Err(Error::Unsupported(
                "final_sigmas_type other than zero".into(),
            ));
        }
        let schedule = SigmaSchedule::new(&common, steps, f.use_karras_sigmas.unwrap_or(false));
        Ok(Self {
            common,
            schedule,
            begin: 0,
        })
    }
}

impl Scheduler for EulerScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.schedule.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        self.schedule.init_noise_sigma(self.common.spacing)
    }

    fn scale_model_input(&self, sample: Tensor<4>, i: usize) -> Tensor<4> {
        let s = self.schedule.sigmas[i];
        sample / (s * s + 1.0).sqrt()
    }

    fn step(
        &mut self,
        model_output: Tensor<4>,
        i: usize,
        sample: Tensor<4>,
        _noise: &mut NoiseFn<'_>,
    ) -> Tensor<4> {
        let sigma = self.schedule.sigmas[i];
        let x0 = predict_x0(self.common.prediction, model_output, sample.clone(), sigma);
        let derivative = (sample.clone() - x0) / sigma;
        let dt = self.schedule.sigmas[i + 1] - sigma;
        let _ = self.begin;
        sample + derivative * dt
    }

    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, i: usize) -> Tensor<4> {
        original + noise * self.schedule.sigmas[i]
    }
}
