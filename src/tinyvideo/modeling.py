"""The model: vision tower (SigLIP, CLIP or DINOv2) -> connector -> a causal LM (Qwen2 in the published models).

The language model is whatever `AutoModelForCausalLM` builds from `config.text_config`: any decoder-only
model whose class takes `inputs_embeds` (Qwen2/2.5/3, Llama and SmolLM2, Phi-3, Gemma, ...). What differs
between families is read from the model itself, never from its name: the layers that must not be split
across devices and gradient checkpointing from its transformers class, the tied output head from its
tied-weight keys.

The processor has already expanded each video placeholder into `num_visual_tokens` copies of
`config.video_token_id`, so sequence lengths are known before the model runs; the model only
replaces those positions' embeddings with the connector output (`masked_scatter`).

The visual path is split in two so that work can be shared:
- `encode_frames`: the vision tower, usually frozen. Its output (frame features) can be computed once
  per video and reused by every rollout, the reference model and every question about that video.
- `connect`: the trainable connector.
`forward` and `generate` accept pixel values, precomputed frame features, or ready `inputs_embeds`.

Videos take one form, as Qwen2-VL's: all videos' frames one after another, `pixel_values_videos`
[sum T_i, 3, S, S] (or their frame features [sum T_i, P, Dv]), with `video_num_frames` [V], each video's
frame count (`processing.pack_videos` makes both from one tensor per video).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    GenerationMixin,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.core_model_loading import revert_weight_conversion
from transformers.modeling_outputs import CausalLMOutputWithPast

from tinyvideo import checkpoints
from tinyvideo.config import IGNORE_INDEX, TinyVideoConfig
from tinyvideo.connectors import PerceiverResampler, build_connector
from tinyvideo.errors import InputError
from tinyvideo.vision_towers import build_vision_tower, dropped_tokens, embed, encoder_layers


class FiniteScores(LogitsProcessor):
    """Stops generation at NaN or +inf scores (suppressed tokens are -inf by design). Non-finite weights, or
    activations that overflow the dtype, give them; greedy decoding would turn them into an empty answer."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if torch.isnan(scores).any() or torch.isposinf(scores).any():
            raise InputError(
                "the model's next-token scores are NaN or infinite: its weights hold non-finite values, "
                "or the dtype overflows (try float32)"
            )
        return scores


class TinyVideoPreTrainedModel(PreTrainedModel):
    config_class = TinyVideoConfig
    config: TinyVideoConfig
    base_model_prefix = "model"
    # `_no_split_modules` is gathered by `post_init` from the vision tower's and the language model's classes.
    _supports_sdpa = True
    _supports_flash_attn = True

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, PerceiverResampler):
            # Small latents, like every other new weight. The published code draws them from N(0, 1); those
            # dominate the residual stream, so a new connector's output hardly depends on the video (on the
            # synthetic suite it differed between videos by 2% of its norm, against 17% with this init).
            init.normal_(module.latents, mean=0.0, std=0.02)


class TinyVideoForConditionalGeneration(TinyVideoPreTrainedModel, GenerationMixin):
    def __init__(self, config: TinyVideoConfig):
        super().__init__(config)
        self.vision_tower = build_vision_tower(config.vision_config)
        self.connector = build_connector(config)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.post_init()

    @property
    def supports_gradient_checkpointing(self) -> bool:
        """True when both the language model's class and the vision tower's can recompute activations."""
        return self.language_model.supports_gradient_checkpointing and self.vision_tower.supports_gradient_checkpointing

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Load a tinyvideo folder, or a published TinyLLaVA-Video(-R1) folder (converted on the fly).

        Local folders only: nothing is downloaded, and only safetensors weights are read (never pickle
        files). The config is checked, and the weights' names and shapes compared with the model it
        describes, before anything is built. Weights come in float32 unless `dtype` (or `torch_dtype`)
        says otherwise. Raises `CheckpointError` naming the folder or file otherwise.
        """
        kwargs["dtype"] = kwargs.pop("torch_dtype", None) or kwargs.get("dtype") or checkpoints.DEFAULT_DTYPE
        folder = pretrained_model_name_or_path
        config = kwargs.pop("config", None) or checkpoints.checkpoint_config(folder)
        mapping = checkpoints.key_mapping(checkpoints.read_config_json(folder))
        checkpoints.check_weights(folder, cls.weight_shapes(config), mapping)
        kwargs.update(config=config, key_mapping=mapping, local_files_only=True, use_safetensors=True)
        return super().from_pretrained(folder, *args, **kwargs)

    @classmethod
    def weight_shapes(cls, config: TinyVideoConfig) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every weight a checkpoint of `config` holds (the tied output head excluded),
        found on the meta device: no memory is taken, whatever the size. Names are as saved: transformers
        saves some towers' weights under their original names (DINOv2's `attention.attention.query`)."""
        with torch.device("meta"):
            model = cls(config)
        tied = model.all_tied_weights_keys  # tied copy -> its source; empty when the head is not tied
        saved = revert_weight_conversion(model, model.state_dict())
        return {name: tuple(t.shape) for name, t in saved.items() if name not in tied}

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    # ---- visual path -------------------------------------------------------------------------------

    def used_vision_layers(self) -> nn.ModuleList:
        """The vision encoder layers that make the hidden state `vision_feature_layer` reads (-1: the last layer's
        output, -2: its input, ...); the layers after them (and the post layer norm) never run."""
        layers = encoder_layers(self.vision_tower)
        return layers[: self.config.vision_feature_layer % (len(layers) + 1)]

    def encode_frames(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Frames [N, 3, S, S] -> features [N, P, Dv]: the hidden state of `vision_feature_layer`.

        Only the layers up to that one run (the published code runs them all and discards the rest).
        The 'patch' strategy drops the tokens before the patches: CLIP's class token, DINOv2's class
        and register tokens, and SigLIP's first patch although SigLIP has no class token: the published
        models were trained that way (docs/published-format.md 1.4). 'cls_patch' keeps every token.
        """
        hidden = embed(self.vision_tower, pixel_values.to(device=self.device, dtype=self.vision_tower.dtype))
        for layer in self.used_vision_layers():
            hidden = layer(hidden, None)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        if self.config.vision_feature_select_strategy == "patch":
            return hidden[:, dropped_tokens(self.config.vision_config) :]
        return hidden

    def connect(self, frame_features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Frame features per video -> visual embeddings per video [Q_i, D]. Videos of equal length share one call."""
        outputs: list[torch.Tensor | None] = [None] * len(frame_features)
        by_length: dict[int, list[int]] = {}
        for index, features in enumerate(frame_features):
            by_length.setdefault(features.shape[0], []).append(index)
        dtype = self.connector_dtype
        for indices in by_length.values():
            stacked = torch.stack([frame_features[i] for i in indices]).to(device=self.device, dtype=dtype)
            for i, embeds in zip(indices, self.connector(stacked)):
                outputs[i] = embeds
        return outputs

    @property
    def connector_dtype(self) -> torch.dtype:
        return next(self.connector.parameters()).dtype

    def get_video_features(self, pixel_values_videos=None, video_num_frames=None, frame_features=None) -> torch.Tensor:
        """All videos' visual embeddings, concatenated in placeholder order: [sum Q_i, D].

        From the frames `pixel_values_videos` [sum T_i, 3, S, S], or from their `frame_features` [sum T_i, P, Dv]
        computed before by `encode_frames`; `video_num_frames` [V] counts each video's frames (None: one video).
        """
        if frame_features is None:
            frame_features = self.encode_frames(pixel_values_videos)
        counts = [len(frame_features)] if video_num_frames is None else torch.as_tensor(video_num_frames).tolist()
        if 0 in counts or sum(counts) != len(frame_features):
            raise ValueError(f"video_num_frames {counts} must be positive and add up to the {len(frame_features)} frames")
        return torch.cat(self.connect(frame_features.split(counts)))

    def embed_inputs(self, input_ids, pixel_values_videos=None, video_num_frames=None, frame_features=None):
        """Token embeddings [B, L, D] with the video placeholders replaced by the visual embeddings (videos as
        `get_video_features` takes them)."""
        embeds = self.get_input_embeddings()(input_ids)
        if pixel_values_videos is None and frame_features is None:
            self.get_placeholder_mask(input_ids, embeds)
            return embeds
        visual = self.get_video_features(pixel_values_videos, video_num_frames, frame_features)
        return embeds.masked_scatter(self.get_placeholder_mask(input_ids, embeds, visual), visual.to(embeds.dtype))

    def get_placeholder_mask(
        self, input_ids: torch.Tensor, inputs_embeds: torch.Tensor, video_features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Where the video tokens are, as a mask the shape of `inputs_embeds`; `ValueError` when their number is
        not the number of visual embeddings (`video_features` [N, D]; None: no video given)."""
        placeholders = input_ids == self.config.video_token_id
        if video_features is None and placeholders.any():
            raise ValueError("input_ids contain video tokens but no pixel_values_videos or frame_features were given")
        if video_features is not None and int(placeholders.sum()) != video_features.shape[0]:
            raise ValueError(
                f"the text has {int(placeholders.sum())} video tokens but the videos give "
                f"{video_features.shape[0]} embeddings: "
                "give one video per <image> placeholder, expanded by the processor for this model's connector"
            )
        return placeholders.unsqueeze(-1).expand_as(inputs_embeds)

    # ---- language model ----------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        video_num_frames: torch.LongTensor | None = None,
        frame_features: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """The language model's output for the prompt with its videos. With `labels` [B, L] (IGNORE_INDEX where
        unsupervised), `loss` is the next-token cross-entropy over the supervised tokens (summed and divided by
        `num_items_in_batch` when the trainer gives it, else their mean), and `logits` [B, K, V] are only those
        of the K positions that predict a supervised token in some row: answers are a few tokens of a few
        hundred, and the output head over the whole vocabulary at every position made the demo's fine-tuning
        steps 1.21x slower (54.4 s against 44.9 s for 12 steps on 2 CPU cores)."""
        if inputs_embeds is None:
            inputs_embeds = self.embed_inputs(input_ids, pixel_values_videos, video_num_frames, frame_features)
        if past_key_values is not None:  # passed on only when given: some families take the cache as `cache`
            kwargs["past_key_values"] = past_key_values
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        targets = None
        if labels is not None:  # position i predicts token i + 1
            targets = nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
            logits_to_keep = (targets != IGNORE_INDEX).any(0).nonzero().squeeze(1)
            targets = targets[:, logits_to_keep]
        outputs = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )
        if targets is not None:
            loss = nn.functional.cross_entropy(
                outputs.logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
            )
            outputs.loss = loss / (num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE_INDEX).sum())
        return outputs

    def generate(self, *args, **kwargs):
        """`GenerationMixin.generate`, never sampling the video token (a spare row the LM head still scores);
        raises `InputError` at the first NaN or infinite next-token score."""
        suppressed = kwargs.get("suppress_tokens") or self.generation_config.suppress_tokens or []
        kwargs["suppress_tokens"] = sorted({*suppressed, self.config.video_token_id})
        kwargs["logits_processor"] = LogitsProcessorList([*(kwargs.get("logits_processor") or []), FiniteScores()])
        return super().generate(*args, **kwargs)

    def _expand_inputs_for_generation(self, expand_size=1, is_encoder_decoder=False, input_ids=None, **model_kwargs):
        """`GenerationMixin`'s (for `num_return_sequences` and beams), with the videos repeated by row: they are not
        batched, so the copies of a row whose videos are [a, b] take [a, b, a, b]."""
        keys = ("pixel_values_videos", "frame_features", "video_num_frames")
        videos = {key: model_kwargs.pop(key) for key in keys if model_kwargs.get(key) is not None}
        key = "frame_features" if "frame_features" in videos else "pixel_values_videos"
        if expand_size > 1 and key in videos and input_ids is not None:
            counts = torch.as_tensor(videos.get("video_num_frames", [len(videos[key])])).tolist()
            order, video = [], 0  # the videos' indices, each row's repeated `expand_size` times
            for placeholders in (input_ids == self.config.video_token_id).sum(1).tolist():
                start = video
                while placeholders > 0 and video < len(counts):
                    placeholders -= self.config.num_visual_tokens(counts[video])
                    video += 1
                order += list(range(start, video)) * expand_size
            chunks = videos[key].split(counts)
            videos[key] = torch.cat([chunks[i] for i in order])
            videos["video_num_frames"] = torch.tensor([counts[i] for i in order], dtype=torch.long)
        input_ids, model_kwargs = super()._expand_inputs_for_generation(expand_size, is_encoder_decoder, input_ids, **model_kwargs)
        return input_ids, {**model_kwargs, **videos}

    def prepare_inputs_for_generation(self, *args, frame_features=None, video_num_frames=None, **kwargs):
        """Visual inputs only matter on the first step; afterwards the KV cache carries them."""
        inputs = super().prepare_inputs_for_generation(*args, **kwargs)
        if kwargs.get("is_first_iteration") or not kwargs.get("use_cache", True):
            inputs["frame_features"] = frame_features
            inputs["video_num_frames"] = video_num_frames
        return inputs


AutoModelForImageTextToText.register(TinyVideoConfig, TinyVideoForConditionalGeneration)
