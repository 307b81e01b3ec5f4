//! Shared by the integration tests: data locations, small corpora, contexts, and in-process
//! stand-ins for what the host lends evaluators.
#![allow(dead_code)]

use pt_sdk::abi_stable::sabi_trait::TD_Opaque;
use pt_sdk::abi_stable::sabi_types::RRef;
use pt_sdk::abi_stable::std_types::{RResult, RSlice, RString};
use pt_sdk::ffi::{HostDataFfi, HostDataFfi_TO, HostModelFfi, HostModelFfi_TO};
use pt_sdk::prelude::*;
use pt_sdk::TensorMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv python with torch + transformers; missing is a test failure, not a skip.
pub fn python() -> PathBuf {
    let p = std::env::var_os("PT_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".pt/venv/bin/python"));
    assert!(p.exists(), "no Python with torch + transformers at {} (set PT_PYTHON): run scripts/setup.sh", p.display());
    p
}

/// The real text set (`scripts/fetch_data.py text`): `$PT_DATA/text` or `~/.cache/pt/data/text`.
pub fn text_data() -> PathBuf {
    let root = std::env::var_os("PT_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| dirs::home_dir().unwrap().join(".cache/pt/data"));
    let dir = root.join("text");
    assert!(
        dir.join("tiny/train.txt").is_file(),
        "no text data under {}: run `python3 scripts/fetch_data.py text`",
        dir.display()
    );
    dir
}

/// A scratch data dir + run dir.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Scratch { dir: tempfile::tempdir().unwrap() }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }
    /// A context whose data dir (caches) and run dir are inside the scratch dir.
    pub fn ctx(&self) -> CreateCtx {
        CreateCtx {
            data_dir: self.path("data").display().to_string(),
            run_dir: self.path("run").display().to_string(),
            seed: 7,
            ..Default::default()
        }
    }
}

/// `n` lines of varied sentences from a fixed word list: deterministic, English-like.
pub fn generated_lines(n: usize, seed: u64) -> Vec<String> {
    const WORDS: &[&str] = &[
        "the", "a", "river", "stone", "quickly", "runs", "over", "bright", "light", "of", "morning", "and", "evening",
        "king", "people", "said", "unto", "them", "computer", "program", "memory", "file", "returns", "value", "every",
        "small", "world", "garden", "green", "tree", "under", "sky", "water", "fire", "north", "south",
    ];
    let mut rng = pt_sdk::rng::CounterRng::new(seed, &[]);
    (0..n)
        .map(|_| {
            let len = 3 + rng.below(20) as usize;
            let words: Vec<&str> = (0..len).map(|_| WORDS[rng.below(WORDS.len() as u64) as usize]).collect();
            let mut s = words.join(" ");
            s.push('.');
            s
        })
        .collect()
}

pub fn json(v: serde_json::Value) -> String {
    v.to_string()
}

/// Builds a component from a JSON config, as the host does.
pub fn make<C: Component>(config: serde_json::Value, ctx: &CreateCtx) -> Result<C> {
    let cfg = <C::Config as Config>::from_json(&config.to_string())?;
    C::new(cfg, ctx)
}

pub fn step(train: bool) -> StepCtx {
    StepCtx { seed: 7, train, world_size: 1, device: -1, ..Default::default() }
}

pub fn ivec(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(&t.to_kind(Kind::Int64).flatten(0, -1)).unwrap()
}

pub fn fvec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(&t.to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

/// What the host lends an evaluator, in-process: a model behind the FFI trait.
pub struct LentModel<'a, A: Architecture> {
    pub arch: Mutex<&'a mut A>,
}

impl<A: Architecture> HostModelFfi for LentModel<'_, A> {
    fn info(&self) -> RResult<RString, PtError> {
        RResult::ROk(serde_json::to_string(&self.arch.lock().unwrap().info()).unwrap().into())
    }
    fn parameters(&self) -> RResult<TensorMap, PtError> {
        RResult::ROk(self.arch.lock().unwrap().parameters().into_iter().collect::<Tensors>().into_ffi())
    }
    fn set_train(&self, train: bool) -> RResult<(), PtError> {
        self.arch.lock().unwrap().set_train(train);
        RResult::ROk(())
    }
    fn forward(&self, inputs: &TensorMap, ctx: &StepCtx) -> RResult<TensorMap, PtError> {
        self.arch.lock().unwrap().forward(&Tensors::share_ffi(inputs), ctx).map(Tensors::into_ffi).into()
    }
}

/// A dataset as the host lends it to an evaluator.
pub struct LentData<'a, D: Dataset> {
    pub data: &'a D,
}

impl<D: Dataset> HostDataFfi for LentData<'_, D> {
    fn info(&self) -> RResult<RString, PtError> {
        RResult::ROk(serde_json::to_string(&self.data.info()).unwrap().into())
    }
    fn get_batch(&self, indices: RSlice<'_, u64>, ctx: &StepCtx) -> RResult<TensorMap, PtError> {
        self.data.get_batch(indices.as_slice(), ctx).map(Tensors::into_ffi).into()
    }
}

/// Runs `evaluator` on `arch` with `data` as its `validation` split.
pub fn evaluate<E: Evaluator, A: Architecture, D: Dataset>(
    evaluator: &mut E,
    arch: &mut A,
    data: &D,
    ctx: &StepCtx,
) -> Result<EvalReport> {
    let model = LentModel { arch: Mutex::new(arch) };
    let lent = LentData { data };
    let model_ref = HostModelFfi_TO::from_ptr(RRef::new(&model), TD_Opaque);
    let data_ref = HostDataFfi_TO::from_ptr(RRef::new(&lent), TD_Opaque);
    let host_model = HostModel::new(model_ref);
    let splits = Splits::new(vec![("validation".to_string(), HostData::new(data_ref))]);
    evaluator.evaluate(&host_model, &splits, ctx)
}

/// The error of a result whose value type has no `Debug` (components).
pub fn expect_err<T>(r: Result<T>) -> PtError {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}
