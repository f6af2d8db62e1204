//! diffusers' `PNDMScheduler` in its PLMS form (`skip_prk_steps`, as every SD config sets).

use burn::tensor::Tensor;

use super::{Common, Defaults, NoiseFn, Prediction, Scheduler, SchedulerConfigFile};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct PndmScheduler {
    common: Common,
    timesteps: Vec<f64>,
    int_timesteps: Vec<i64>,
    step_ratio: i64,
    final_alpha_cumprod: f32,
    ets: Vec<Tensor<4>>,
    counter: usize,
    cur_sample: Option<Tensor<4>>,
}

impl PndmScheduler {
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
        if !f.skip_prk_steps.unwrap_or(false) {
            return Err(Error::Unsupported(
                "PNDM with Runge-Kutta warm-up steps (skip_prk_steps = false); choose another scheduler".into(),
            ));
        }
        // PLMS repeats the second-to-last training timestep once: [t0, t1, t1, t2, ...].
        let base: Vec<i64> = common.discrete_timesteps(steps).into_iter().rev().collect();
        let n = base.len();
        let mut plms: Vec<i64> = base[..n - 1].to_vec();
        if n >= 2 {
            plms.push(base[n - 2]);
        }
        plms.push(base[n - 1]);
        plms.reverse();
        let final_alpha_cumprod = if f.set_alpha_to_one.unwrap_or(false) {
            1.0
        } else {
            common.alphas_cumprod[0]
        };
        Ok(Self {
            step_ratio: (common.num_train_timesteps / steps) as i64,
            timesteps: plms.iter().map(|&t| t as f64).collect(),
            int_timesteps: plms,
            common,
            final_alpha_cumprod,
            ets: Vec::new(),
            counter: 0,
            cur_sample: None,
        })
    }

    fn alpha(&self, t: i64) -> f32 {
        if t >= 0 {
            self.common.alphas_cumprod[t as usize]
        } else {
            self.final_alpha_cumprod
        }
    }

    fn prev_sample(
        &self,
        sample: Tensor<4>,
        t: i64,
        prev_t: i64,
        model_output: Tensor<4>,
    ) -> Tensor<4> {
        let a_t = self.alpha(t);
        let a_prev = self.alpha(prev_t);
        let b_t = 1.0 - a_t;
        let b_prev = 1.0 - a_prev;
        let model_output = match self.common.prediction {
            Prediction::VPrediction => model_output * a_t.sqrt() + sample.clone() * b_t.sqrt(),
            _ => model_output,
        };
        let sample_coeff = (a_prev / a_t).sqrt();
        let denom = a_t * b_prev.sqrt() + (a_t * b_t * a_prev).sqrt();
        sample * sample_coeff - model_output * ((a_prev - a_t) / denom)
    }
}

impl Scheduler for PndmScheduler {
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
        let mut t = self.int_timesteps[i];
        let mut prev_t = t - self.step_ratio;
        if self.counter != 1 {
            if self.ets.len() > 3 {
                self.ets.remove(0);
            }
            self.ets.push(model_output.clone());
        } else {
            prev_t = t;
            t += self.step_ratio;
        }
        let e = &self.ets;
        let n = e.len();
        let (model_output, sample) = if n == 1 && self.counter == 0 {
            self.cur_sample = Some(sample.clone());
            (model_output, sample)
        } else if n == 1 && self.counter == 1 {
            let s = self.cur_sample.take().unwrap_or(sample);
            ((model_output + e[0].clone()) / 2.0, s)
        } else if n == 2 {
            ((e[1].clone() * 3.0 - e[0].clone()) / 2.0, sample)
        } else if n == 3 {
            (
                (e[2].clone() * 23.0 - e[1].clone() * 16.0 + e[0].clone() * 5.0) / 12.0,
                sample,
            )
        } else {
            (
                (e[n - 1].clone() * 55.0 - e[n - 2].clone() * 59.0 + e[n - 3].clone() * 37.0
                    - e[n - 4].clone() * 9.0)
                    * (1.0 / 24.0),
                sample,
            )
        };
        self.counter += 1;
        self.prev_sample(sample, t, prev_t, model_output)
    }

    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, i: usize) -> Tensor<4> {
        let a = self.alpha(self.int_timesteps[i]);
        original * a.sqrt() + noise * (1.0 - a).sqrt()
    }
}
