//! Known-good diffusers models for the local engine, with what they cost to download. Sizes are
//! the sums of the files [`super::select`] picks, as published; `install` and `search` report
//! the exact figure from the Hub.

use super::select::Precision;

/// One recommended model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CuratedModel {
    /// Hub repository id.
    pub id: &'static str,
    /// A short name for lists.
    pub name: &'static str,
    /// The architecture: `sd1`, `sd2` or `sdxl`.
    pub family: &'static str,
    /// `text-to-image` or `inpainting`.
    pub task: &'static str,
    /// Native resolution (square side, pixels).
    pub resolution: u32,
    /// Download size of the fp16 files, bytes (approximate).
    pub fp16_bytes: u64,
    /// Download size of the fp32 files, bytes (approximate).
    pub fp32_bytes: u64,
    /// One line on when to pick it.
    pub note: &'static str,
}

impl CuratedModel {
    pub fn size(&self, precision: Precision) -> u64 {
        match precision {
            Precision::Fp16 => self.fp16_bytes,
            Precision::Fp32 => self.fp32_bytes,
        }
    }
}

const MB: u64 = 1_000_000;

/// The curated list, in the order a newcomer should consider them.
pub const CURATED: &[CuratedModel] = &[
    CuratedModel {
        id: "stable-diffusion-v1-5/stable-diffusion-v1-5",
        name: "Stable Diffusion 1.5",
        family: "sd1",
        task: "text-to-image",
        resolution: 512,
        fp16_bytes: 2_134 * MB,
        fp32_bytes: 4_267 * MB,
        note: "the classic; most fine-tunes and LoRAs target it (the maintained copy of runwayml's)",
    },
    CuratedModel {
        id: "stabilityai/sd-turbo",
        name: "SD-Turbo",
        family: "sd2",
        task: "text-to-image",
        resolution: 512,
        fp16_bytes: 2_582 * MB,
        fp32_bytes: 5_163 * MB,
        note: "1–4 steps, no guidance: the fastest on a CPU",
    },
    CuratedModel {
        id: "stabilityai/stable-diffusion-2-1",
        name: "Stable Diffusion 2.1",
        family: "sd2",
        task: "text-to-image",
        resolution: 768,
        fp16_bytes: 2_582 * MB,
        fp32_bytes: 5_163 * MB,
        note: "768 px, v-prediction",
    },
    CuratedModel {
        id: "stabilityai/sdxl-turbo",
        name: "SDXL-Turbo",
        family: "sdxl",
        task: "text-to-image",
        resolution: 512,
        fp16_bytes: 6_940 * MB,
        fp32_bytes: 13_878 * MB,
        note: "SDXL quality in 1–4 steps",
    },
    CuratedModel {
        id: "stabilityai/stable-diffusion-xl-base-1.0",
        name: "SDXL base 1.0",
        family: "sdxl",
        task: "text-to-image",
        resolution: 1024,
        fp16_bytes: 6_940 * MB,
        fp32_bytes: 13_878 * MB,
        note: "1024 px, best quality here; needs about 8 GB of memory in fp16",
    },
    CuratedModel {
        id: "stable-diffusion-v1-5/stable-diffusion-inpainting",
        name: "Stable Diffusion 1.5 inpainting",
        family: "sd1",
        task: "inpainting",
        resolution: 512,
        fp16_bytes: 2_134 * MB,
        fp32_bytes: 4_267 * MB,
        note: "fills a masked area; for `--mask` edits",
    },
];

/// The curated entry for `id`, if any (case-insensitive, as the Hub treats ids).
pub fn find(id: &str) -> Option<&'static CuratedModel> {
    CURATED.iter().find(|m| m.id.eq_ignore_ascii_case(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_covers_the_issue_and_avoids_deleted_repos() {
        for family in ["sd1", "sd2", "sdxl"] {
            assert!(CURATED.iter().any(|m| m.family == family), "{family}");
        }
        assert!(CURATED.iter().any(|m| m.task == "inpainting"));
        assert!(
            CURATED
                .iter()
                .any(|m| m.id.contains("turbo") && m.family == "sdxl")
        );
        // Deleted from the Hub in 2024 (see imageai-formats.md).
        assert!(CURATED.iter().all(|m| !m.id.starts_with("runwayml/")));
        for model in CURATED {
            assert!(model.fp16_bytes < model.fp32_bytes, "{}", model.id);
            assert_eq!(find(&model.id.to_uppercase()).map(|m| m.id), Some(model.id));
        }
    }
}
