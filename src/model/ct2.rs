//! Native reader for CTranslate2 model files (`model.bin` of a faster-whisper directory).
//!
//! Layout: u32 version, u16-length spec name, u32 revision, u32 variable count, then per variable
//! a u16-length name, u8 rank, `rank` u32 dims, u8 dtype, u32 byte count and the data; then the
//! aliases (u32 count, pairs of u16-length names). Strings carry a trailing NUL.

use crate::{Error, Result};
use half::{bf16, f16};
use std::collections::HashMap;
use std::path::Path;

/// One stored variable, converted to f32.
#[derive(Debug, Clone)]
pub struct Ct2Variable {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values (integers and halves converted to f32).
    pub data: Vec<f32>,
    /// The stored data type code (0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16).
    pub dtype: u8,
}

/// A parsed CTranslate2 model file.
#[derive(Debug, Clone)]
pub struct Ct2Model {
    /// Spec name, e.g. `WhisperSpec`.
    pub spec: String,
    /// Variables by name, aliases resolved.
    pub variables: HashMap<String, Ct2Variable>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                Error::bad_model(
                    self.path,
                    format!("truncated CTranslate2 file at byte {}", self.pos),
                )
            })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.u16()? as usize;
        let b = self.take(n)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        String::from_utf8(b.to_vec())
            .map_err(|_| Error::bad_model(self.path, "a variable name is not UTF-8"))
    }
}

/// Parse a CTranslate2 `model.bin`.
pub fn read_ct2(path: &Path) -> Result<Ct2Model> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_ct2(&bytes, path)
}

/// Parse CTranslate2 model bytes; `path` only names the source in errors.
pub fn parse_ct2(bytes: &[u8], path: &Path) -> Result<Ct2Model> {
    let mut c = Cursor {
        bytes,
        pos: 0,
        path,
    };
    let version = c.u32()?;
    if !(1..=6).contains(&version) {
        return Err(Error::bad_model(
            path,
            format!("not a CTranslate2 model (version {version})"),
        ));
    }
    let spec = if version >= 2 {
        c.string()?
    } else {
        String::new()
    };
    let _revision = if version >= 3 { c.u32()? } else { 1 };
    let count = c.u32()? as usize;
    let mut variables = HashMap::new();
    for _ in 0..count {
        let name = c.string()?;
        let rank = c.u8()? as usize;
        if rank > 8 {
            return Err(Error::bad_model(
                path,
                format!("{name}: implausible rank {rank}"),
            ));
        }
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            shape.push(c.u32()? as usize);
        }
        let dtype = c.u8()?;
        let nbytes = c.u32()? as usize;
        let data = c.take(nbytes)?;
        let elem = match dtype {
            0 | 3 => 4,
            1 => 1,
            2 | 4 | 5 => 2,
            other => {
                return Err(Error::bad_model(
                    path,
                    format!("{name}: unknown dtype code {other}"),
                ))
            }
        };
        let numel: usize = shape.iter().product();
        if numel.checked_mul(elem) != Some(nbytes) {
            return Err(Error::bad_model(
                path,
                format!("{name}: {nbytes} bytes do not fit shape {shape:?} of dtype {dtype}"),
            ));
        }
        let values: Vec<f32> = match dtype {
            0 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            1 => data.iter().map(|&b| b as i8 as f32).collect(),
            2 => data
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32)
                .collect(),
            3 => data
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
                .collect(),
            4 => data
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            _ => data
                .chunks_exact(2)
                .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        };
        variables.insert(
            name,
            Ct2Variable {
                shape,
                data: values,
                dtype,
            },
        );
    }
    if c.pos < bytes.len() {
        let aliases = c.u32()? as usize;
        for _ in 0..aliases {
            let alias = c.string()?;
            let target = c.string()?;
            if let Some(v) = variables.get(&target).cloned() {
                variables.insert(alias, v);
            }
        }
    }
    Ok(Ct2Model { spec, variables })
}

impl Ct2Model {
    /// A variable as f32, dequantised when stored as int8/int16 with a `<name>_scale` beside it.
    pub fn get(&self, name: &str, path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
        let var = self
            .variables
            .get(name)
            .ok_or_else(|| Error::bad_model(path, format!("missing variable {name}")))?;
        let mut data = var.data.clone();
        if matches!(var.dtype, 1 | 2) {
            let scale = self
                .variables
                .get(&format!("{name}_scale"))
                .ok_or_else(|| {
                    Error::bad_model(path, format!("{name}: quantised without a scale"))
                })?;
            let rows = var.shape.first().copied().unwrap_or(1).max(1);
            let per_row = data.len() / rows;
            for (r, chunk) in data.chunks_mut(per_row.max(1)).enumerate() {
                let s = if scale.data.len() == 1 {
                    scale.data[0]
                } else {
                    scale.data[r]
                };
                chunk.iter_mut().for_each(|v| *v /= s);
            }
        }
        Ok((var.shape.clone(), data))
    }

    /// A scalar variable (e.g. `encoder/num_heads`), if present.
    pub fn scalar(&self, name: &str) -> Option<f32> {
        self.variables
            .get(name)
            .and_then(|v| v.data.first().copied())
    }

    /// Number of `prefix/layer_N` groups present.
    pub fn count_layers(&self, prefix: &str) -> usize {
        (0..)
            .take_while(|i| {
                let p = format!("{prefix}/layer_{i}/");
                self.variables.keys().any(|k| k.starts_with(&p))
            })
            .count()
    }
}
