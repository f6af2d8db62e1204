//! diffusers' `DDIMScheduler` (deterministic, eta = 0).

use burn::tensor::Tensor;

use super::{Common, Defaults, NoiseFn, Prediction, Scheduler, SchedulerConfigFile};
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct DdimScheduler {
    common: Common,
    timesteps: Vec<f64>,
    int_timesteps: Vec<i64>,
    step_ratio: i64,
    final_alpha_cumprod: f32,
    clip_sample: Option<f32>,
}

impl DdimScheduler {
    pub fn new(f: &SchedulerConfigFile, steps: usize) -> Result<Self> {
        let common = Common::resolve(
            f,
            Defaults {
                beta_schedule: "linear",
                beta_start: 1e-4,
                beta_end: 0.02,
                spacing: "leading",
            },
        )?;
        let int_timesteps = common.discrete_timesteps(steps);
        let final_alpha_cumprod = if f.set_alpha_to_one.unwrap_or(true) {
            1.0
        } else {
            common.alphas_cumprod[0]
        };
        let clip_sample = f
            .clip_sample
            .unwrap_or(true)
            .then(|| f.clip_sample_range.unwrap_or(1.0) as f32);
        Ok(Self {
            step_ratio: (common.num_train_timesteps / steps) as i64,
            timesteps: int_timesteps.iter().map(|&t| t as f64).collect(),
            int_timesteps,
            common,
            final_alpha_cumprod,
            clip_sample,
        })
    }

    fn alpha(&self, t: i64) -> f32 {
        if t >= 0 {
            self.common.alphas_cumprod[t as usize]
        } else {
            self.final_alpha_cumprod
        }
    }
}

impl Scheduler for DdimScheduler {
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
        let t = self.int_timesteps[i];
        let a_t = self.alpha(t);
        let a_prev = self.alpha(t - self.step_ratio);
        let b_t = 1.0 - a_t;
        let (mut x0, eps) = match self.common.prediction {
            Prediction::Epsilon => (
                (sample - model_output.clone() * b_t.sqrt()) / a_t.sqrt(),
                model_output,
            ),
            Prediction::VPrediction => (
                sample.clone() * a_t.sqrt() - model_output.clone() * b_t.sqrt(),
                model_output * a_t.sqrt() + sample * b_t.sqrt(),
            ),
            Prediction::Sample => {
                let eps = (sample - model_output.clone() * a_t.sqrt()) / b_t.sqrt();
                (model_output, eps)
            }
        };
        if let Some(r) = self.clip_sample {
            x0 = x0.clamp(-r, r);
        }
        x0 * a_prev.sqrt() + eps * (1.0 - a_prev).sqrt()
    }

    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, i: usize) -> Tensor<4> {
        let a = self.alpha(self.int_timesteps[i]);
        original * a.sqrt() + noise * (1.0 - a).sqrt()
    }
}
