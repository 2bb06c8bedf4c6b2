"""Model configuration: a causal language model (Qwen2 in the published models), a vision tower (SigLIP, CLIP or
DINOv2) and a connector between them."""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from tinyvideo.connectors import CONNECTORS
from tinyvideo.vision_towers import dropped_tokens, kind_of, tower_tokens

IGNORE_INDEX = -100  # the label of a token the training loss skips (transformers' and torch's convention)
# Which vision-tower tokens the connector reads: `patch` drops the leading tokens (for SigLIP, which has none,
# its first patch: the published models' quirk, docs/published-format.md 1.4); `cls_patch` keeps every token.
FEATURE_SELECT_STRATEGIES = ("patch", "cls_patch")


def canonical_connector(name: str) -> tuple[str, int | None]:
    """Map a connector name (ours or a published one, matched exactly) to (connector_type, mlp_depth or None)."""
    key = name.lower()
    if key in CONNECTORS:
        return key, None
    for connector in CONNECTORS.values():
        settings = connector.read_published_name(key)
        if settings is not None:
            return connector.connector_type, settings.get("mlp_depth")
    known = ", ".join([*CONNECTORS, *(name for c in CONNECTORS.values() for name in c.published_names)])
    raise ValueError(f"unknown connector_type {name!r}; expected one of: {known}")


class TinyVideoConfig(PreTrainedConfig):
    """Configuration of `TinyVideoForConditionalGeneration`.

    `num_queries` is the number of visual tokens a video becomes for the video-level connectors
    (`group`, `naive`); the `image` connector gives each frame `num_queries // group` tokens, and
    `mlp` keeps every patch token. `video_token_id` is the token the processor repeats once per
    visual token; it sits in the spare embedding rows above the tokenizer's vocabulary. `image_size` is
    the side of the frames the vision tower sees, when it is not `vision_config.image_size` (DINOv2
    checkpoints are made for 518-pixel images and see 224-pixel crops). `vision_feature_select_strategy`
    says which of the tower's tokens the connector reads (`FEATURE_SELECT_STRATEGIES`; `ValueError` otherwise).

    The `words` connector reads `attribute_head`, what its tower's attribute head means (the tower folder's
    attribute_head.json: `colour_classes`, `shape_classes`, ...), and has `num_frame_embeddings` frame
    embeddings, the most frames a video may have for it.

    `text_config` is the config of any decoder-only causal LM whose transformers class takes
    `inputs_embeds` (its `model_type` picks the class; without one it is Qwen2, as in the published models).
    """

    model_type = "tinyvideo"
    # A sub-config dict is read by its `model_type` (Qwen2 and SigLIP when it has none, as in published checkpoints).
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="qwen2"),
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="siglip_vision_model"),
    }

    text_config: dict | PreTrainedConfig | None = None
    vision_config: dict | PreTrainedConfig | None = None
    connector_type: str = "group"
    num_queries: int = 512
    group: int = 16
    num_resampler_layers: int = 3
    mlp_depth: int = 2
    vision_feature_layer: int = -2
    vision_feature_select_strategy: str = "patch"
    image_size: int | None = None
    attribute_head: dict | None = None
    num_frame_embeddings: int = 64
    video_token_id: int | None = None
    model_max_length: int = 3072
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.connector_type, depth = canonical_connector(self.connector_type)
        self.mlp_depth = depth or self.mlp_depth
        self.tie_word_embeddings = self.text_config.tie_word_embeddings
        kind_of(self.vision_config)  # a vision tower tinyvideo can build
        if self.image_size is None:
            self.image_size = self.vision_config.image_size
        if self.vision_feature_select_strategy not in FEATURE_SELECT_STRATEGIES:
            raise ValueError(
                f"vision_feature_select_strategy must be one of {', '.join(FEATURE_SELECT_STRATEGIES)}; "
                f"got {self.vision_feature_select_strategy!r}"
            )
        CONNECTORS[self.connector_type].check(self)
        if self.video_token_id is None:
            self.video_token_id = self.text_config.vocab_size - 1

    @property
    def hidden_size(self) -> int:
        return self.text_config.hidden_size

    @property
    def tokens_per_frame(self) -> int:
        """Vision-tower tokens per frame after feature selection (728 for SigLIP-so400m-384 'patch', 256 for
        CLIP ViT-L/14-224 and DINOv2 at 224)."""
        tokens = tower_tokens(self.vision_config, self.image_size)
        return tokens - dropped_tokens(self.vision_config) if self.vision_feature_select_strategy == "patch" else tokens

    def num_visual_tokens(self, num_frames: int) -> int:
        """How many embeddings the connector makes of a video of `num_frames` frames."""
        return CONNECTORS[self.connector_type].num_visual_tokens(self, num_frames)


AutoConfig.register(TinyVideoConfig.model_type, TinyVideoConfig)
