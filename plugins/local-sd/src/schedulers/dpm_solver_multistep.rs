//! diffusers' `DPMSolverMultistepScheduler` as DPM-Solver++(2M) (`algorithm_type =
//! "dpmsolver++"`, `solver_order = 2`, midpoint), with or without Karras sigmas.

use burn::tensor::Tensor;

use super::euler::{karras_sigmas, sigma_to_t};
use super::{
    Common, Defaults, NoiseFn, Prediction, Scheduler, SchedulerConfigFile, Spacing, arange_desc,
    interp, linspace_f64, round_half_even,
};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct DpmSolverMultistepScheduler {
    common: Common,
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
    lower_order_final: bool,
    euler_at_final: bool,
    /// The previous step's denoised estimate (order 2 needs one).
    last_x0: Option<Tensor<4>>,
    lower_order_nums: usize,
}

impl DpmSolverMultistepScheduler {
    pub fn new(f: &SchedulerConfigFile, steps: usize, karras: bool) -> Result<Self> {
        let common = Common::resolve(
            f,
            Defaults {
                beta_schedule: "linear",
                beta_start: 1e-4,
                beta_end: 0.02,
                spacing: "linspace",
            },
        )?;
        if f.algorithm_type
            .as_deref()
            .is_some_and(|a| a != "dpmsolver++")
        {
            return Err(Error::Unsupported(format!(
                "DPM-Solver algorithm_type `{}`",
                f.algorithm_type.as_deref().unwrap_or("")
            )));
        }
        if f.solver_type.as_deref().is_some_and(|s| s != "midpoint") {
            return Err(Error::Unsupported(
                "DPM-Solver solver_type other than midpoint".into(),
            ));
        }
        if f.solver_order.is_some_and(|o| o != 2) {
            return Err(Error::Unsupported(
                "DPM-Solver solver_order other than 2".into(),
            ));
        }
        if f.final_sigmas_type.as_deref().is_some_and(|t| t != "zero") {
            return Err(Error::Unsupported(
                "final_sigmas_type other than zero".into(),
            ));
        }
        let n = common.num_train_timesteps;
        let mut timesteps: Vec<f64> = match common.spacing {
            Spacing::Linspace => {
                let v = linspace_f64(0.0, (n - 1) as f64, steps + 1);
                v.into_iter()
                    .rev()
                    .take(steps)
                    .map(round_half_even)
                    .collect()
            }
            Spacing::Leading => {
                let ratio = n / (steps + 1);
                (1..=steps)
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
        let sigmas: Vec<f64> = if karras || f.use_karras_sigmas == Some(true) {
            let log_sigmas: Vec<f64> = train.iter().map(|&s| f64::from(s).ln()).collect();
            let k = karras_sigmas(
                f64::from(train[0]),
                f64::from(train[train.len() - 1]),
                steps,
            );
            timesteps = k
                .iter()
                .map(|&s| round_half_even(sigma_to_t(s, &log_sigmas)))
                .collect();
            k
        } else {
            timesteps.iter().map(|&t| interp(t, &train)).collect()
        };
        let mut sigmas: Vec<f32> = sigmas.into_iter().map(|s| s as f32).collect();
        sigmas.push(0.0);
        Ok(Self {
            common,
            timesteps,
            sigmas,
            lower_order_final: f.lower_order_final.unwrap_or(true),
            euler_at_final: f.euler_at_final.unwrap_or(false),
            last_x0: None,
            lower_order_nums: 0,
        })
    }

    /// `(alpha_t, sigma_t)` of the variance-preserving process at noise level `sigma`, in f32
    /// as diffusers evaluates them.
    fn alpha_sigma(sigma: f32) -> (f32, f32) {
        let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
        (alpha, sigma * alpha)
    }
}

impl Scheduler for DpmSolverMultistepScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    fn scale_model_input(&self, sample: Tensor<4>, _i: usize) -> Tensor<4> {
        sample
    }

    fn step(
        &mut self,
        model_output: Tensor<4>,
        i: usize,
        sample: Tensor<4>,
        _noise: &mut NoiseFn<'_>,
    ) -> Tensor<4> {
        let steps = self.timesteps.len();
        // The last sigma is zero, so diffusers always ends with a first-order step.
        let lower_order_final = i == steps - 1;
        let _ = (self.lower_order_final, self.euler_at_final);
        let lower_order_second = i + 2 == steps && self.lower_order_final && steps < 15;
        let (alpha_s0, sigma_s0) = Self::alpha_sigma(self.sigmas[i]);
        let x0 = match self.common.prediction {
            Prediction::Epsilon => (sample.clone() - model_output * sigma_s0) / alpha_s0,
            Prediction::VPrediction => sample.clone() * alpha_s0 - model_output * sigma_s0,
            Prediction::Sample => model_output,
        };
        let (alpha_t, sigma_t) = Self::alpha_sigma(self.sigmas[i + 1]);
        let lambda = |a: f32, s: f32| a.ln() - s.ln();
        let lambda_t = lambda(alpha_t, sigma_t);
        let lambda_s0 = lambda(alpha_s0, sigma_s0);
        let h = lambda_t - lambda_s0;
        let first_order = self.lower_order_nums < 1 || lower_order_final || self.last_x0.is_none();
        let out = if first_order {
            sample * (sigma_t / sigma_s0) - x0.clone() * (alpha_t * ((-h).exp() - 1.0))
        } else {
            let _ = lower_order_second;
            let prev = self.last_x0.clone().unwrap_or_else(|| x0.clone());
            let (alpha_s1, sigma_s1) = Self::alpha_sigma(self.sigmas[i - 1]);
            let h0 = lambda_s0 - lambda(alpha_s1, sigma_s1);
            let r0 = h0 / h;
            let d1 = (x0.clone() - prev) * (1.0 / r0);
            let e = alpha_t * ((-h).exp() - 1.0);
            sample * (sigma_t / sigma_s0) - x0.clone() * e - d1 * (0.5 * e)
        };
        self.last_x0 = Some(x0);
        if self.lower_order_nums < 2 {
            self.lower_order_nums += 1;
        }
        out
    }

    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, i: usize) -> Tensor<4> {
        let (alpha, sigma) = Self::alpha_sigma(self.sigmas[i]);
        original * alpha + noise * sigma
    }
}
