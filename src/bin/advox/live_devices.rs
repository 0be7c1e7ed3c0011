//! `advox live` on sound devices (cpal; the `audio-devices` feature): a microphone to speakers
//! or to a file, through the plugins' processing ([`crate::live`]).

use crate::common;
use crate::live::{processor, write_planar, Args, BLOCK};
use anyhow::{bail, Context, Result};
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Print the audio hosts and their devices.
pub fn list() -> Result<()> {
    let mut any = false;
    for id in cpal::available_hosts() {
        let host = cpal::host_from_id(id)?;
        println!("host {}", id.name());
        if let Ok(devices) = host.devices() {
            for d in devices {
                any = true;
                let name = d.id().map(|i| i.to_string()).unwrap_or_else(|_| "?".into());
                let dirs = [
                    d.default_input_config().is_ok().then_some("input"),
                    d.default_output_config().is_ok().then_some("output"),
                ];
                let dirs: Vec<&str> = dirs.into_iter().flatten().collect();
                println!("  {name} ({})", dirs.join(", "));
            }
        }
    }
    if !any {
        bail!("no audio devices found: this machine has no sound card (or no access to it); use --input-file and -o instead");
    }
    Ok(())
}

fn find_device(host: &cpal::Host, id: Option<&str>, input: bool) -> Result<cpal::Device> {
    let kind = if input { "input" } else { "output" };
    let device = match id {
        Some(id) => {
            let parsed = id.parse().map_err(|e| {
                anyhow::anyhow!("device id {id:?}: {e:?} (see `advox live --list`)")
            })?;
            host.device_by_id(&parsed)
        }
        None if input => host.default_input_device(),
        None => host.default_output_device(),
    };
    device.with_context(|| {
        format!("no {kind} device: this machine has no sound card, or the device is unknown (see `advox live --list`; use --input-file / -o without one)")
    })
}

/// Run the chosen processing from an input device to an output device or a file, until
/// Ctrl-C or `--seconds`.
pub fn run(args: &Args) -> Result<()> {
    let host = cpal::default_host();
    let input = find_device(&host, args.input_device.as_deref(), true)?;
    let config: cpal::StreamConfig = input
        .default_input_config()
        .context(
            "the input device cannot be opened: no sound card (or no access to it)? \
             `advox live --list` shows the devices; --input-file and -o work without one",
        )?
        .into();
    let channels = config.channels as usize;
    let rate = config.sample_rate as f32;
    let mut p = processor(args, rate, channels)?;
    let capacity = (rate as usize * channels).max(BLOCK * channels * 4);
    let (mut to_proc, mut from_input) = rtrb::RingBuffer::<f32>::new(capacity);
    let input_stream = input.build_input_stream(
        config,
        move |data: &[f32], _: &cpal::InputCallbackInfo| {
            for &x in data {
                let _ = to_proc.push(x);
            }
        },
        |e| eprintln!("advox live: input stream error: {e}"),
        None,
    )?;
    let (mut to_out, mut from_proc) = rtrb::RingBuffer::<f32>::new(capacity);
    let output_stream = match &args.output {
        Some(_) => None,
        None => {
            let out = find_device(&host, args.output_device.as_deref(), false)?;
            let stream = out.build_output_stream(
                config,
                move |data: &mut [f32], _: &cpal::OutputCallbackInfo| {
                    for v in data.iter_mut() {
                        *v = from_proc.pop().unwrap_or(0.0);
                    }
                },
                |e| eprintln!("advox live: output stream error: {e}"),
                None,
            )?;
            Some(stream)
        }
    };
    input_stream.play()?;
    if let Some(s) = &output_stream {
        s.play()?;
    }
    let deadline = args
        .seconds
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    let mut recorded: Vec<Vec<f32>> = vec![Vec::new(); channels];
    let mut planar: Vec<Vec<f32>> = vec![vec![0.0; BLOCK]; channels];
    eprintln!(
        "advox live: {} Hz, {channels} channels; Ctrl-C or --seconds to stop",
        rate
    );
    common::install_interrupt();
    while !common::INTERRUPTED.load(Ordering::Relaxed)
        && deadline.is_none_or(|d| Instant::now() < d)
    {
        if from_input.slots() < BLOCK * channels {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        for i in 0..BLOCK {
            for c in planar.iter_mut() {
                c[i] = from_input.pop().unwrap_or(0.0);
            }
        }
        let mut views: Vec<&mut [f32]> = planar.iter_mut().map(|c| c.as_mut_slice()).collect();
        p.process(&mut views);
        if args.output.is_some() {
            for (r, c) in recorded.iter_mut().zip(&planar) {
                r.extend_from_slice(c);
            }
        } else {
            for i in 0..BLOCK {
                for c in &planar {
                    let _ = to_out.push(c[i]);
                }
            }
        }
    }
    drop(input_stream);
    drop(output_stream);
    if let Some(path) = &args.output {
        write_planar(path, &recorded, rate as u32, &[])?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
