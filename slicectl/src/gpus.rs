//! `slicectl gpu list`: the node's GPUs, as grants name them.

use libdiycloud::adapters::nvidia::{self, Discovery, Source};
use libdiycloud::model::gpu::mig_name;
use serde_json::json;

use crate::{view, Context, Failure};

/// Bytes for people, in GiB: 150754820096 -> "140.4G".
fn gib(bytes: u64) -> String {
    format!("{:.1}G", bytes as f64 / f64::from(1u32 << 30))
}

pub fn list(ctx: &Context) -> Result<(), Failure> {
    let found = nvidia::discover();
    view::print(ctx, &document(&found), &text(&found));
    Ok(())
}

/// The JSON: the discovery, each MIG instance with the name `--gpus` takes.
fn document(found: &Discovery) -> serde_json::Value {
    let mut doc = json!(found);
    for (gpu, shown) in found
        .gpus
        .iter()
        .zip(doc["gpus"].as_array_mut().into_iter().flatten())
    {
        let names = gpu
            .mig_instances
            .iter()
            .map(|m| mig_name(gpu.uuid.as_deref(), m));
        for (name, entry) in names.zip(shown["mig_instances"].as_array_mut().into_iter().flatten())
        {
            entry["name"] = json!(name);
        }
    }
    doc
}

fn text(found: &Discovery) -> String {
    let source = match found.source {
        Source::Nvml => "NVML",
        Source::Procfs => "/proc/driver/nvidia (NVML unavailable)",
        Source::DeviceNodes => "/dev/nvidiaN only (no driver information)",
        Source::None => return "no NVIDIA GPU on this node".into(),
    };
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let rows: Vec<[String; 7]> = found
        .gpus
        .iter()
        .map(|g| {
            [
                g.index.to_string(),
                dash(g.uuid.clone()),
                format!("/dev/nvidia{}", g.minor),
                dash(g.name.clone()),
                dash(g.memory_bytes.map(gib)),
                dash(g.pci_bus.clone()),
                dash(g.mig.map(|m| if m { "on" } else { "off" }.to_owned())),
            ]
        })
        .collect();
    let header = [
        "INDEX", "UUID", "DEVICE", "MODEL", "MEMORY", "PCI BUS", "MIG",
    ];
    let driver = found
        .driver_version
        .as_deref()
        .map_or(String::new(), |v| format!(", driver {v}"));
    let migs: Vec<[String; 4]> = found
        .gpus
        .iter()
        .flat_map(|g| {
            g.mig_instances.iter().map(move |m| {
                [
                    g.index.to_string(),
                    m.gi.to_string(),
                    m.ci.to_string(),
                    dash(mig_name(g.uuid.as_deref(), m)),
                ]
            })
        })
        .collect();
    let mig_table = if migs.is_empty() {
        String::new()
    } else {
        format!(
            "\n\nMIG instances (grant one with --gpus NAME):\n{}",
            view::table(&["GPU", "GI", "CI", "NAME"], &migs)
        )
    };
    format!(
        "{}{mig_table}\n\n{} GPU(s), from {source}{driver}",
        view::table(&header, &rows),
        found.gpus.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use libdiycloud::adapters::nvidia::Gpu;
    use libdiycloud::model::gpu::MigInstance;

    #[test]
    fn the_table_says_where_the_list_came_from() {
        let none = Discovery {
            source: Source::None,
            driver_version: None,
            gpus: vec![],
            nvml_error: Some("no libnvidia-ml".into()),
        };
        assert_eq!(text(&none), "no NVIDIA GPU on this node");
        let one = Discovery {
            source: Source::Nvml,
            driver_version: Some("580.159.04".into()),
            gpus: vec![Gpu {
                index: 0,
                uuid: Some("GPU-82efa4d8-2419-4b59-e2b6-52028b659ad4".into()),
                minor: 0,
                name: Some("NVIDIA H200".into()),
                memory_bytes: Some(150_754_820_096),
                pci_bus: Some("0000:00:06.0".into()),
                mig: Some(false),
                mig_instances: vec![],
            }],
            nvml_error: None,
        };
        let shown = text(&one);
        assert!(
            shown.contains("/dev/nvidia0") && shown.contains("140.4G"),
            "{shown}"
        );
        assert!(
            shown.ends_with("1 GPU(s), from NVML, driver 580.159.04"),
            "{shown}"
        );
        assert!(!shown.contains("MIG instances"), "{shown}");

        let mut mig = one;
        mig.gpus[0].mig = Some(true);
        mig.gpus[0].mig_instances = vec![MigInstance {
            gi: 2,
            ci: 0,
            gi_minor: 21,
            ci_minor: 22,
        }];
        let name = "MIG-GPU-82efa4d8-2419-4b59-e2b6-52028b659ad4/2/0";
        let shown = text(&mig);
        assert!(shown.contains(name), "{shown}");
        assert_eq!(document(&mig)["gpus"][0]["mig_instances"][0]["name"], name);
        assert_eq!(
            document(&mig)["gpus"][0]["mig_instances"][0]["gi_minor"],
            21
        );
    }
}
