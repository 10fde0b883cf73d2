"""Train a small NLA (AV + AR) for any local Hugging Face causal LM, on CPU or CUDA.

The recipe follows the paper, scaled down to run on a laptop:

1. **Activations**: the target runs on the dataset's (prompt, reply) pairs (chat template, as
   the runtime does it); at each text we take the last prompt token plus a few random positions
   past the first ``skip_tokens`` tokens, at layer K with the runtime's hidden-state convention
   (:mod:`forensics.nla.activations`, reused as is).
2. **Warm-start targets**: a summary of the text up to each position. The paper used a strong
   LLM; :class:`BuiltinSummarizer` is deterministic (language and script of the prefix, its
   role, salient terms, and what follows: the next words and the reply's language);
   :class:`HTTPSummarizer` calls any OpenAI-compatible ``/v1/chat/completions`` endpoint.
3. **Supervised stage**: the AR (target cut to K+1 blocks, final norm = identity, value head)
   regresses the normalised activation from the summary (MSE after rescaling both to
   ``mse_scale``); the AV (a copy of the target) learns to write ``<explanation>summary
   </explanation>`` with the vector injected at the slot (next-token loss on the explanation).
4. **RL stage**: GRPO on the AV. For each vector a group of explanations is sampled; reward =
   minus the AR's normalised MSE; advantages are group-normalised; a KL penalty (k3 estimator)
   keeps the AV near the warm-started copy. The AR is regressed on the sampled explanations in
   the same steps. Rewards are computed under ``no_grad`` and the AR sees detached text: no
   gradient flows between the two.
5. **Output**: AV and AR written with the runtime's writers (:func:`forensics.nla.meta.write_av`,
   :func:`write_ar`), so ``forensics nla register`` loads them unchanged. FVE on held-out
   positions is measured after each stage with the runtime's own :class:`AV`/:class:`AR`
   classes, against a shuffled baseline (each held-out vector scored against the explanation
   of another vector).

Everything is plain PyTorch; no TRL. Numbers are only what was measured in the run.

Modules: ``summarize`` (step 2), ``positions`` (step 1), ``sft`` (step 3), ``grpo`` (step 4),
``config`` (:class:`TrainConfig`, :class:`TrainReport`), ``trainer`` (:class:`NLATrainer`,
steps 5 and the orchestration; ``train_nla``, ``train_from_dataset``).
"""

from forensics.nla.train.config import StageEval, TrainConfig, TrainReport
from forensics.nla.train.positions import collect_positions
from forensics.nla.train.summarize import (LANG_NAMES, SUMMARY_WORDS, BuiltinSummarizer, HTTPSummarizer,
                                           PositionContext)
from forensics.nla.train.trainer import NLATrainer, train_from_dataset, train_nla

__all__ = ["TrainConfig", "TrainReport", "StageEval", "NLATrainer", "train_nla", "train_from_dataset",
           "BuiltinSummarizer", "HTTPSummarizer", "PositionContext", "SUMMARY_WORDS", "LANG_NAMES",
           "collect_positions"]
