"""Model loading and live rollout: the newest model in a watched directory replaces the one
in use between two batches; a model that does not fit this worker is refused."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from decay.errors import DecayError
from decay.scoring import AnyScorer, ExponentialDecayScorer
from decay.settings import Settings

log = logging.getLogger(__name__)


def shipped_model(name: str = "model.onnx") -> Path:
    """A model that ships inside the package: ``model.onnx`` (the default, trained on the
    simulator), ``cdnow-lapse.onnx`` (the lapse step model trained on the CDNOW log's first
    39 weeks, served by the demo)."""
    return Path(str(resources.files("stream_app") / "models" / name))


def load_scorer(settings: Settings, path: Path | None = None) -> AnyScorer:
    """The scorer the settings ask for: for ``onnx``, the model's card says which (a step
    model, whose card has a state layout, is scored incrementally). Raises
    ``ModelMismatchError`` for a foreign model, ``UnknownStateLayoutError`` for a step model
    whose per-user state this worker does not know."""
    if settings.scorer == "baseline":
        return ExponentialDecayScorer(half_life_s=settings.half_life_hours * 3600.0)
    from decay.card import CardError, read_card
    from stream_app.lapse_scorer import LapseScorer, is_step_model
    from stream_app.onnx_scorer import ModelMismatchError, OnnxScorer

    model = path or settings.model_path or shipped_model()
    try:
        card = read_card(model)
    except CardError as exc:
        raise ModelMismatchError(f"{model}: {exc}") from exc
    if not is_step_model(card):
        return OnnxScorer(model)
    days = settings.interest_horizon_days
    return LapseScorer(
        model, horizon_h=None if days is None else days * 24.0, threshold=settings.threshold
    )


class ModelUnavailableError(DecayError, RuntimeError):
    """The model a worker is to start with is missing or cannot be served."""


def startup_scorer(settings: Settings) -> AnyScorer:
    """The scorer a worker starts with, loaded before the worker touches Kafka. Raises
    :class:`ModelUnavailableError`, naming the setting, when the model is no file or cannot
    be loaded (not ONNX, or trained for other features)."""
    if settings.scorer == "baseline":
        return load_scorer(settings)
    path = settings.model_path or shipped_model()
    which = "DECAY_MODEL_PATH" if settings.model_path is not None else "the shipped model"
    if not path.is_file():
        raise ModelUnavailableError(f"{which}: no model file {path}")
    try:
        return load_scorer(settings, path)
    except Exception as exc:  # onnxruntime's errors share no base class but Exception
        raise ModelUnavailableError(f"{which}: cannot load {path}: {exc}") from exc


def pseudonymizer(settings: Settings) -> Callable[[str], str] | None:
    """Keyed HMAC-SHA256 of user ids (first 128 bits, hex), or None when no key is set."""
    if settings.pseudonym_key is None:
        return None
    key = settings.pseudonym_key.get_secret_value().encode()

    def pseudonym(user_id: str) -> str:
        return "p" + hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()[:32]

    return pseudonym


@dataclass
class ModelWatcher:
    """Remembers which file of ``directory`` is served; ``poll`` returns a new scorer when a
    newer file appears and loads cleanly, else None. Refusals are logged and counted."""

    directory: Path
    settings: Settings
    on_refused: Callable[[Path, Exception], None]
    current: tuple[str, float, int] | None = None
    refused: set[tuple[str, float, int]] = field(default_factory=set)

    def newest(self) -> Path | None:
        models = [p for p in self.directory.glob("*.onnx") if p.is_file()]
        return max(models, key=lambda p: (p.stat().st_mtime, p.name), default=None)

    def poll(self) -> AnyScorer | None:
        path = self.newest()
        if path is None:
            return None
        stat = path.stat()
        ident = (str(path), stat.st_mtime, stat.st_size)
        if ident == self.current or ident in self.refused:
            return None
        try:
            scorer = load_scorer(self.settings, path)
        except Exception as exc:  # a refused model must never stop the worker
            self.refused.add(ident)
            log.error("model %s refused, keeping the current one: %s", path.name, exc)
            self.on_refused(path, exc)
            return None
        self.current = ident
        log.info("model %s loaded: version %s", path.name, scorer.version)
        return scorer
