"""DCMFNet model: every ablation variant runs forward and backward, switches change exactly their site, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import igf as fusion_layers
from dcmfnet import DCMFNet, DCMFNetOutput, ModelConfig, build_model, load_model_config
from dcmfnet.blocks import (
    BidirectionalGatedFusion,
    ConcatFusion,
    GatedFusion,
    MultiplicativeFusion,
    NoFusion,
    NoMultiLevelFusion,
    resize_to,
)
from dcmfnet.config import LGVE1_PLACEMENTS, MLFF_MODES
from dcmfnet.model import FUSION_SITES
from igf import FUSION_LAYERS, GATES, OUTPUT_MODES, ASGate, ConvGRUGate, ConvLSTMGate, IterativeGatedFusion

SITES = ("fusion_e2", "fusion_e3", "fusion_e4", "fusion_enc", "fusion_dec")

TINY = {
    "backbone": "tiny_cnn",
    "output_stride": 16,
    "backbone_options": {"widths": [8, 8, 12, 16]},
    "image_size": 32,
    "text_encoder": "word",
    "word_channels": 16,
    "word_heads": 2,
    "text_channels": 8,
    "igf_layers": 2,
    "igf_heads": 2,
    "lgve1_guidance_channels": 8,
    "multi_level_channels": 8,
    "aspp_channels": 8,
    "aspp_rates": [1, 2],
    "decoder_channels": 8,
    "head_dropout": 0.0,
}


def tiny_config(**overrides: object) -> ModelConfig:
    return ModelConfig(**{**TINY, **overrides})  # type: ignore[arg-type]


def tiny_model(**overrides: object) -> DCMFNet:
    torch.manual_seed(0)
    return build_model(tiny_config(**overrides))


def inputs(model: DCMFNet, batch: int = 2, size: tuple[int, int] = (32, 48)) -> tuple[torch.Tensor, dict]:
    torch.manual_seed(1)
    texts = ["the big red circle on the left", "small blue square"][:batch] * (batch // 2 + 1)
    return torch.randn(batch, 3, *size), model.tokenize(texts[:batch], 8)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def assert_forward_backward(model: DCMFNet, size: tuple[int, int] = (32, 48)) -> None:
    images, text = inputs(model, size=size)
    logits = model(images, text)
    assert logits.shape == (2, 1, *size)
    assert torch.isfinite(logits).all()
    logits.square().mean().backward()
    no_grad = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad}"
    bad = [name for name, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad}"


VARIANTS = (
    [{"lgve1": placement} for placement in LGVE1_PLACEMENTS]
    + [{"lgve2": False}, {"lgve1": "none", "lgve2": False}, {"lgve1": "none", "lgve2": False, "mlff": "none"}]
    + [{"mlff": mode} for mode in MLFF_MODES]
    + [{"igf_gate": gate} for gate in GATES]
    + [{"igf_output_mode": mode} for mode in OUTPUT_MODES]
    + [{"igf_layers": 1}, {"igf_layers": 3}, {"output_stride": 8}, {"output_stride": 32}, {"text_pooling": "mean"}]
    + [{"fusion_layer": name} for name in FUSION_LAYERS if name != "igf"]
    + [{"fusion_layer": "pwam", "lgve1": "none", "lgve2": False}, {"fusion_layer": "film", "mlff": "concat"}]
    + [{"igf_token_pooling": "attention"}]
)


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_every_variant_runs_forward_and_backward(overrides: dict) -> None:
    model = tiny_model(**overrides)
    model.train()
    assert_forward_backward(model, size=(32, 64) if overrides.get("output_stride") == 32 else (32, 48))


def site_types(model: DCMFNet) -> dict[str, type]:
    return {site: type(getattr(model, site)) for site in SITES}


def assert_only_sites_differ(full: DCMFNet, variant: DCMFNet, sites: set[str]) -> None:
    """Every submodule outside ``sites`` has the same state-dict keys and shapes in both models."""
    full_state, variant_state = full.state_dict(), variant.state_dict()
    outside = [key for key in full_state if key.split(".")[0] not in sites]
    assert outside == [key for key in variant_state if key.split(".")[0] not in sites]
    for key in outside:
        assert full_state[key].shape == variant_state[key].shape, key


def test_decoder_igf_resizing_m_dec_itself_matches_resizing_it_first() -> None:
    """The decoder passes M_dec unresized: same E_dec as the explicit ``IGF(M_dec↑, V1)`` of Eq. 6."""
    site = tiny_model(mlff="igf").fusion_dec.double().eval()
    assert isinstance(site, IterativeGatedFusion)
    torch.manual_seed(2)
    m_dec = torch.randn(2, TINY["aspp_channels"], 2, 3, dtype=torch.float64)
    v1 = torch.randn(2, TINY["backbone_options"]["widths"][0], 8, 12, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(site(m_dec, v1), site(resize_to(m_dec, v1.shape[-2:]), v1))


@pytest.mark.parametrize("mode", [m for m in MLFF_MODES if m != "igf"])
def test_other_decoder_sites_resize_a_map_guidance_themselves(mode: str) -> None:
    site = tiny_model(mlff=mode).fusion_dec.double().eval()
    torch.manual_seed(2)
    m_dec = torch.randn(2, TINY["aspp_channels"], 2, 3, dtype=torch.float64)
    v1 = torch.randn(2, TINY["backbone_options"]["widths"][0], 8, 12, dtype=torch.float64)
    with torch.no_grad():
        out = site(m_dec, v1)
        assert out.shape == (2, TINY["decoder_channels"], 8, 12)
        torch.testing.assert_close(out, site(resize_to(m_dec, v1.shape[-2:]), v1))


def test_lgve2_off_removes_exactly_the_third_igf() -> None:
    full, variant = tiny_model(), tiny_model(lgve2=False)
    assert isinstance(full.fusion_enc, IterativeGatedFusion)
    assert isinstance(variant.fusion_enc, NoFusion)
    assert count(full) - count(variant) == count(full.fusion_enc)
    assert_only_sites_differ(full, variant, {"fusion_enc"})


@pytest.mark.parametrize("placement", list(LGVE1_PLACEMENTS))
def test_lgve1_places_igf_at_the_named_stages(placement: str) -> None:
    full, variant = tiny_model(), tiny_model(lgve1=placement)
    stages = LGVE1_PLACEMENTS[placement]
    for site in ("e2", "e3", "e4"):
        expected = IterativeGatedFusion if site in stages else NoFusion
        assert type(getattr(variant, f"fusion_{site}")) is expected
    assert_only_sites_differ(full, variant, {"fusion_e2", "fusion_e3", "fusion_e4"})
    # An IGF at stage i keeps C_i channels and uses C'_v = C_i / 2, C'_l = lgve1_guidance_channels.
    for site, channels in zip(("e2", "e3", "e4"), variant.backbone.channels[1:], strict=True):
        fusion = getattr(variant, f"fusion_{site}")
        if isinstance(fusion, IterativeGatedFusion):
            assert (fusion.guided_channels, fusion.out_channels, fusion.hidden_channels) == (
                channels,
                channels,
                channels // 2,
            )
            assert fusion.guidance_proj.out_channels == TINY["lgve1_guidance_channels"]


def test_no_language_fusion_anywhere_falls_back_to_multiplication_at_lgve2() -> None:
    model = tiny_model(lgve1="none", lgve2=False)
    assert isinstance(model.fusion_enc, MultiplicativeFusion)
    assert all(isinstance(getattr(model, site), NoFusion) for site in ("fusion_e2", "fusion_e3", "fusion_e4"))
    # The expression still changes the output.
    model.eval()
    images, _ = inputs(model)
    a = model(images, model.tokenize(["red circle", "red circle"], 8), return_intermediates=True)
    b = model(images, model.tokenize(["blue square", "blue square"], 8), return_intermediates=True)
    assert not torch.equal(a.e_enc, b.e_enc)
    assert not torch.equal(a.logits, b.logits)


@pytest.mark.parametrize(
    ("mode", "block"),
    [
        ("none", NoMultiLevelFusion),
        ("concat", ConcatFusion),
        ("gated", GatedFusion),
        ("bidirectional_gated", BidirectionalGatedFusion),
        ("igf", IterativeGatedFusion),
    ],
)
def test_mlff_switch_changes_only_the_decoder_fusion(mode: str, block: type) -> None:
    full, variant = tiny_model(), tiny_model(mlff=mode)
    assert type(variant.fusion_dec) is block
    assert_only_sites_differ(full, variant, {"fusion_dec"})


@pytest.mark.parametrize(("gate", "block"), [("asgate", ASGate), ("convgru", ConvGRUGate), ("convlstm", ConvLSTMGate)])
def test_gate_switch_reaches_every_igf(gate: str, block: type) -> None:
    model = tiny_model(igf_gate=gate, igf_layers=3)
    igfs = [m for m in model.modules() if isinstance(m, IterativeGatedFusion)]
    assert len(igfs) == 4  # E3, E4, E_enc, E_dec
    for igf in igfs:
        assert len(igf.fusions) == 3
        assert len(igf.gates) == 2 and all(type(g) is block for g in igf.gates)


def test_depth_and_output_mode_reach_every_igf() -> None:
    model = tiny_model(igf_layers=4, igf_output_mode="last_gate")
    for igf in (m for m in model.modules() if isinstance(m, IterativeGatedFusion)):
        assert (len(igf.fusions), len(igf.gates), igf.output_mode) == (4, 4, "last_gate")


def test_return_intermediates() -> None:
    model = tiny_model(lgve1="e2_e3_e4", igf_layers=3).eval()
    images, text = inputs(model)
    with torch.no_grad():
        logits = model(images, text)
        out = model(images, text, return_intermediates=True)
    assert isinstance(out, DCMFNetOutput)
    torch.testing.assert_close(out.logits, logits)
    assert set(out.igf) == set(FUSION_SITES)
    c1, c2, c3, c4 = model.backbone.channels
    assert out.sentence.shape == (2, TINY["text_channels"])
    assert out.v1.shape == (2, c1, 8, 12) and out.v2.shape == (2, c2, 4, 6)
    assert out.v3.shape == out.e3.shape == (2, c3, 2, 3)
    assert out.e2.shape == out.v2.shape and out.e4.shape == (2, c4, 2, 3)
    assert out.multi_level.shape == out.e_enc.shape == (2, TINY["multi_level_channels"], 2, 3)
    assert out.m_dec.shape == (2, TINY["aspp_channels"], 2, 3)
    assert out.e_dec.shape == (2, TINY["decoder_channels"], 8, 12)
    for site, igf_out in out.igf.items():
        assert len(igf_out.fusions) == 3 and len(igf_out.gates) == 2, site
    torch.testing.assert_close(out.igf["enc"].output, out.e_enc)
    torch.testing.assert_close(out.igf["dec"].output, out.e_dec)
    assert list(out.stage_maps()) == ["LGVE-1", "LGVE-2", "MLFF"]
    assert out.stage_maps()["MLFF"] is out.e_dec


def test_intermediates_only_name_igf_sites() -> None:
    model = tiny_model(lgve1="e4", lgve2=False, mlff="concat").eval()
    images, text = inputs(model)
    with torch.no_grad():
        out = model(images, text, return_intermediates=True)
    assert set(out.igf) == {"e4"}
    torch.testing.assert_close(out.e_enc, out.multi_level)  # LGVE-2 off: E_enc = M
    torch.testing.assert_close(out.e3, out.v3)  # no IGF at E3


def test_parameter_groups_split_backbone_from_rest() -> None:
    model = tiny_model()
    groups = model.parameter_groups()
    assert [g["name"] for g in groups] == ["backbone", "rest"]
    backbone = {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in groups[0]["params"]} == backbone
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.parameters()} - backbone
    torch.optim.Adam([{**g, "lr": lr} for g, lr in zip(groups, (1.82e-5, 1.82e-4), strict=True)])


def test_frozen_text_encoder_is_left_out_and_gets_no_gradient() -> None:
    model = tiny_model(freeze_text_encoder=True)
    model.train()
    assert not model.text_encoder.training
    text_ids = {id(p) for p in model.text_encoder.parameters()}
    assert not any(id(p) in text_ids for g in model.parameter_groups() for p in g["params"])
    images, text = inputs(model)
    model(images, text).mean().backward()
    assert all(p.grad is None for p in model.text_encoder.parameters())
    assert model.text_proj.weight.grad is not None


def test_tokenize() -> None:
    model = tiny_model()
    text = model.tokenize(["the red circle", "a big green triangle at the top right"], 6)
    assert text["input_ids"].dtype == torch.long and text["input_ids"].shape == (2, 6)
    assert text["attention_mask"].tolist()[0] == [1, 1, 1, 1, 0, 0]


@pytest.mark.parametrize("name", ["model_cpu.yaml", "paper_resnet101.yaml", "paper_swin.yaml"])
def test_yaml_configs_load(name: str) -> None:
    cfg = load_model_config(name)
    assert cfg.lgve1 == "e3_e4" and cfg.lgve2 and cfg.mlff == "igf" and cfg.igf_gate == "asgate"


def test_cpu_config_is_small_and_runs() -> None:
    torch.manual_seed(0)
    model = build_model(load_model_config("model_cpu.yaml"))
    params = count(model)
    print(f"model_cpu.yaml: {params:,} parameters")
    assert 200_000 <= params <= 1_000_000
    images = torch.randn(2, 3, 64, 64)
    logits = model(images, model.tokenize(["the small red circle", "blue square on the left"], 8))
    assert logits.shape == (2, 1, 64, 64)


def _meta_bert_encoder():
    from transformers import BertConfig, BertModel

    from dcmfnet.text_encoders import HFTextEncoder

    with torch.device("meta"):
        return HFTextEncoder(BertModel(BertConfig(), add_pooling_layer=False))


@pytest.mark.parametrize(
    ("name", "c_v"), [("paper_resnet101.yaml", (256, 512, 1024, 2048)), ("paper_swin.yaml", (128, 256, 512, 1024))]
)
def test_paper_config_builds_with_paper_channels(name: str, c_v: tuple[int, ...]) -> None:
    model = build_model(load_model_config(name), text_encoder=_meta_bert_encoder(), device="meta")
    print(f"{name}: {count(model):,} parameters ({count(model.backbone):,} backbone)")
    assert model.backbone.channels == c_v
    assert isinstance(model.fusion_e2, NoFusion)
    for site, channels in (("fusion_e3", c_v[2]), ("fusion_e4", c_v[3])):  # C'_v = C_v / 2, C'_l = 256
        igf = getattr(model, site)
        assert (igf.hidden_channels, igf.guidance_proj.out_channels, igf.out_channels) == (
            channels // 2,
            256,
            channels,
        )
    assert (model.fusion_enc.hidden_channels, model.fusion_enc.guidance_proj.out_channels) == (256, 256)
    assert (model.fusion_dec.hidden_channels, model.fusion_dec.guidance_proj.out_channels) == (128, 128)
    assert model.text_proj.in_features == 768 and model.text_proj.out_features == 256
    for igf in (m for m in model.modules() if isinstance(m, IterativeGatedFusion)):
        assert len(igf.fusions) == 5 and all(isinstance(g, ASGate) for g in igf.gates)


# --- bad input ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> DCMFNet:
    return tiny_model().eval()


def test_batch_mismatch(model: DCMFNet) -> None:
    images, _ = inputs(model)
    text = model.tokenize(["red circle"] * 3, 8)
    with pytest.raises(ValueError, match=r"image batch \(2\) and text batch \(3\)"):
        model(images, text)


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        (torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8), TypeError, "floating point"),
        (torch.randn(2, 1, 32, 32), ValueError, r"\(B, 3, H, W\)"),
        (torch.randn(3, 32, 32), ValueError, r"\(B, 3, H, W\)"),
        (torch.randn(2, 3, 32, 40), ValueError, "multiples of 16"),
    ],
)
def test_bad_images(model: DCMFNet, images: torch.Tensor, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        model(images, model.tokenize(["red circle"] * 2, 8))


def test_bad_text(model: DCMFNet) -> None:
    images, text = inputs(model)
    with pytest.raises(TypeError, match="input_ids"):
        model(images, {"input_ids": text["input_ids"]})
    with pytest.raises(TypeError, match="integer"):
        model(images, {**text, "input_ids": text["input_ids"].float()})
    with pytest.raises(ValueError, match="must match"):
        model(images, {**text, "attention_mask": text["attention_mask"][:, :3]})


@pytest.mark.parametrize(
    ("field", "value", "listed"),
    [
        ("backbone", "vgg16", "resnet101"),
        ("text_encoder", "gpt", "minilm"),
        ("igf_gate", "lstm", "convlstm"),
        ("igf_output_mode", "mean", "all_fusions"),
        ("lgve1", "e3", "e2_e3_e4"),
        ("mlff", "attention", "bidirectional_gated"),
        ("text_pooling", "max", "mean"),
        ("output_stride", 4, "16"),
    ],
)
def test_unknown_config_values_list_the_valid_ones(field: str, value: object, listed: str) -> None:
    with pytest.raises(ValueError, match=f"unknown {field}.*valid:.*{listed}"):
        tiny_config(**{field: value})
    cfg = tiny_config()
    with pytest.raises(ValueError, match=f"valid:.*{listed}"):
        build_model(_bypass(cfg, field, value))


def _bypass(cfg: ModelConfig, field: str, value: object) -> ModelConfig:
    """A config with an invalid value set after construction (as a YAML merge could)."""
    setattr(cfg, field, value)
    return cfg


def test_unknown_yaml_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "model.yaml"
    path.write_text("backbone: tiny_cnn\nigf_depth: 3\n")
    with pytest.raises(Exception, match="igf_depth"):
        load_model_config(path)
    with pytest.raises(ValueError, match="unknown mlff"):
        load_model_config("model_cpu.yaml", ["mlff=sum"])


def test_resnet18_output_stride_error() -> None:
    with pytest.raises(ValueError, match="output_stride=32"):
        build_model(tiny_config(backbone="resnet18", backbone_options={}, output_stride=16))


@pytest.mark.parametrize("backbone", ["swin_tiny", "swin_base"])
def test_swin_output_stride_is_checked_by_the_config(backbone: str) -> None:
    with pytest.raises(ValueError, match=f"backbone '{backbone}' supports only output_stride=32, got output_stride=16"):
        ModelConfig(backbone=backbone)  # the default output_stride=16
    assert ModelConfig(backbone=backbone, output_stride=32).output_stride == 32
    with pytest.raises(ValueError, match="supports only output_stride=32"):
        load_model_config("paper_swin.yaml", ["output_stride=8"])


def test_igf_fused_switch_gives_the_same_training_step() -> None:
    """``igf_fused=false`` (the plain IGF path) and the fused default: same loss, same gradients."""
    torch.manual_seed(0)
    fused = build_model(load_model_config("model_cpu")).train()
    plain = build_model(load_model_config("model_cpu", ["igf_fused=false"])).train()
    plain.load_state_dict(fused.state_dict())
    images = torch.randn(2, 3, 64, 64)
    text = fused.tokenize(["the red circle", "the small blue square on the left"], 8)
    losses = []
    for model in (fused, plain):
        torch.manual_seed(1)  # same dropout draws
        loss = model(images, text).square().mean()
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    for (name, p_fused), p_plain in zip(fused.named_parameters(), plain.parameters(), strict=True):
        if p_fused.grad is not None:
            torch.testing.assert_close(p_fused.grad, p_plain.grad, rtol=1e-4, atol=1e-6, msg=name)


PEERS = {"film": fusion_layers.FiLM, "pwam": fusion_layers.PixelWordAttention, "concat": fusion_layers.ConcatFusion}


@pytest.mark.parametrize("name", sorted(PEERS))
def test_fusion_layer_switch_puts_the_peer_at_every_igf_site_and_changes_nothing_else(name: str) -> None:
    full, variant = tiny_model(), tiny_model(fusion_layer=name)
    igf_sites = {site for site, kind in site_types(full).items() if kind is IterativeGatedFusion}
    assert igf_sites == {"fusion_e3", "fusion_e4", "fusion_enc", "fusion_dec"}
    assert {site for site, kind in site_types(variant).items() if kind is PEERS[name]} == igf_sites
    assert_only_sites_differ(full, variant, igf_sites)
    assert variant.fusion_dec.out_channels == full.fusion_dec.out_channels == TINY["decoder_channels"]


def test_pixel_word_attention_sites_read_the_words_and_the_decoder_its_map() -> None:
    model = tiny_model(fusion_layer="pwam")
    images, text = inputs(model)
    seen: dict[str, tuple] = {}
    for site in ("fusion_e3", "fusion_enc", "fusion_dec"):
        getattr(model, site).register_forward_pre_hook(
            lambda module, args, kwargs, site=site: seen.setdefault(site, (args, kwargs)), with_kwargs=True
        )
    model(images, text)
    for site in ("fusion_e3", "fusion_enc"):
        (words, _), kwargs = seen[site]
        assert words.shape == (2, 8, TINY["text_channels"])  # (B, T, C_l)
        assert torch.equal(kwargs["guidance_mask"], text["attention_mask"])
    (m_dec, _), kwargs = seen["fusion_dec"]
    assert m_dec.dim() == 4 and "guidance_mask" not in kwargs


@pytest.mark.parametrize("identity_init", [True, False])
def test_pixel_word_attention_at_the_decoder_cuts_the_deep_path_at_init_only_when_it_starts_as_identity(
    identity_init: bool,
) -> None:
    """E_dec = PWAM(M_dec, V1) starting as the identity is E_dec = V1: the first backward reaches nothing
    behind M_dec (the language, the deep stages, the ASPP) — the docs' ablation guide measures what that costs.
    With PyTorch's default gate initialisation (LAVT's released code) every parameter gets a gradient."""
    model = tiny_model(fusion_layer="pwam", pwam_identity_init=identity_init)
    assert model.fusion_dec.identity_init is identity_init
    images, text = inputs(model)
    model(images, text).square().mean().backward()
    deep = [model.text_encoder, model.backbone.stages[2], model.fusion_enc, model.aspp]
    reached = [any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()) for part in deep]
    assert reached == [not identity_init] * len(deep)
    assert all(p.grad is not None for p in model.backbone.stages[0].parameters())  # V1's path is open


@pytest.mark.parametrize("name", ["film", "concat", "igf"])
def test_other_layers_read_the_sentence_feature(name: str) -> None:
    model = tiny_model(fusion_layer=name)
    assert not model.reads_words
    images, text = inputs(model)
    seen: list[torch.Tensor] = []
    model.fusion_e3.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    model(images, text)
    assert seen[0].shape == (2, TINY["text_channels"])


def test_unknown_fusion_layer_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown fusion_layer 'mamba'; valid: \['igf', 'film', 'pwam', 'concat'\]"):
        tiny_config(fusion_layer="mamba")


def test_igf_token_attention_reaches_the_language_sites_only() -> None:
    model = tiny_model(igf_token_pooling="attention")
    assert model.reads_words
    assert [getattr(model, site).token_pooling for site in ("fusion_e3", "fusion_e4", "fusion_enc", "fusion_dec")] == [
        "attention", "attention", "attention", "mean"]  # fmt: skip
