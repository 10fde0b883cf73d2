"""The training knobs (:class:`TrainConfig`) and what a run measured (:class:`TrainReport`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from forensics.nla.meta import DEFAULT_INJECTION_CHAR


@dataclass
class TrainConfig:
    layer: int
    hidden_state_index: int | None = None
    positions_per_text: int = 6          # random positions per text, besides the last prompt token
    skip_tokens: int = 3                 # never sample the first tokens (they decode poorly)
    summary_expected: int = 3            # builtin summaries name the target's top-k next tokens (0: off)
    summary_before: int = 2              # builtin summaries quote this many words before the current one
    heldout_frac: float = 0.15
    max_heldout: int = 256
    sft_steps: int = 300
    rl_steps: int = 30
    batch_size: int = 32
    av_lr: float = 2e-3
    ar_lr: float = 2e-3
    rl_lr: float = 2e-4
    rl_batch: int = 8                    # vectors per GRPO step
    rl_group: int = 8                    # sampled explanations per vector
    kl_coef: float = 0.05
    temperature: float = 1.0
    max_new_tokens: int = 40
    injection_char: str = DEFAULT_INJECTION_CHAR
    seed: int = 0
    device: str | None = None


@dataclass
class StageEval:
    fve: float
    mse: float
    cos: float
    fve_shuffled: float
    fve_summaries: float      # the AR on the warm-start summaries themselves (its ceiling here)
    examples: list[dict] = field(default_factory=list)


@dataclass
class TrainReport:
    target: str
    av_dir: str
    ar_dir: str
    layer: int
    hidden_state_index: int
    d_model: int
    n_texts: int
    n_train_positions: int
    n_heldout_positions: int
    variance: float
    injection_scale: float
    summarizer: str
    device: str
    ar_loss: list[float] = field(default_factory=list)      # first, last (EMA) of the SFT stage
    av_loss: list[float] = field(default_factory=list)
    rl_reward: list[float] = field(default_factory=list)    # mean reward, first and last steps
    rl_kl: float | None = None
    baseline: StageEval | None = None                      # before training (random AV/AR)
    sft: StageEval | None = None
    rl: StageEval | None = None
    av_tokens_per_s: float = 0.0          # SFT, forward + backward + step, explanation tokens
    ar_tokens_per_s: float = 0.0          # SFT, AR prompt tokens
    av_positions_per_s: float = 0.0       # SFT, training positions (vectors) per second
    ar_positions_per_s: float = 0.0
    rl_explanations_per_s: float = 0.0    # GRPO sampling only
    rl_steps_per_s: float = 0.0           # whole GRPO steps (sample + reward + update + AR step)
    seconds: dict = field(default_factory=dict)

    def summary(self) -> dict:
        d = asdict(self)
        for k in ("baseline", "sft", "rl"):
            if d.get(k):
                d[k].pop("examples", None)
        return d
