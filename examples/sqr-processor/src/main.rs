//! A toy stage, `sqr`, that squares a number: the smallest possible ext-processor.
//!
//! Try it by hand:
//! ```text
//! $ echo '{"id":1,"task":15}' | sqr-processor
//! sqr processor ready
//! {"id":1,"err_msg":null,"output":225}
//! ```

use serde::{Deserialize, Serialize};
use vc_processors::{run_consumer, Ctx, Task};

/// The task is a bare number on the wire: `{"id": 1, "task": 15}`.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
struct Sqr(u64);

impl Task for Sqr {
    const STAGE: &'static str = "sqr";
    type Output = u64;
}

fn main() -> anyhow::Result<()> {
    run_consumer(|Sqr(n): Sqr, _ctx: &Ctx| {
        n.checked_mul(n)
            .ok_or_else(|| anyhow::anyhow!("{n} squared overflows a u64"))
    })
}
