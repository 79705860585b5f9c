import pytest
import torch

from prefuse.config import TrainConfig
from prefuse.data.batching import Batch
from prefuse.models.encoders import ENCODERS
from prefuse.models.ensemble import UnimodalEnsemble
from prefuse.models.fusion import Concatenation, ModalityAttention
from prefuse.models.mult import MulT
from prefuse.models.network import MultimodalNetwork, NetworkSpec


def _spec(fusion="attention", encoder="lstm"):
    return NetworkSpec(modalities=["a", "b", "c"], dims={"a": 4, "b": 3, "c": 5},
                       sequence={"a": True, "b": True, "c": False},
                       encoders={"a": encoder, "b": encoder, "c": "mlp"}, fusion=fusion,
                       out_dim=2, width=8, dropout=0.0, head_hidden=8)


def _batch(n=6, steps=5):
    torch.manual_seed(0)
    lengths = torch.tensor([5, 3, 1, 4, 2, 5][:n])
    x = {"a": torch.randn(n, steps, 4), "b": torch.randn(n, steps, 3), "c": torch.randn(n, 5)}
    for m in ("a", "b"):
        x[m][torch.arange(steps)[None, :] >= lengths[:, None]] = 0
    return Batch(x=x, lengths={"a": lengths, "b": lengths, "c": torch.ones(n, dtype=torch.long)},
                 present={m: torch.ones(n, dtype=torch.bool) for m in "abc"},
                 y=torch.zeros(n, dtype=torch.long))


def test_attention_weights_sum_to_one_and_match_hand_computation():
    torch.manual_seed(0)
    fusion = ModalityAttention(modalities=3, width=4)
    h = torch.randn(2, 3, 4)
    present = torch.ones(2, 3, dtype=torch.bool)
    z, alpha = fusion(h, present)
    expected_alpha = torch.softmax(h.flatten(1) @ fusion.score.weight.T + fusion.score.bias, 1)
    assert torch.allclose(alpha, expected_alpha)
    assert torch.allclose(alpha.sum(1), torch.ones(2))
    assert torch.allclose(z, (expected_alpha[:, :, None] * h).flatten(1))


def test_attention_changes_the_output():
    torch.manual_seed(0)
    model = MultimodalNetwork(_spec()).eval()
    batch = _batch()
    before = model(batch).logits
    with torch.no_grad():
        model.fusion.score.bias.copy_(torch.tensor([10.0, -10.0, -10.0]))
    out = model(batch)
    after, new_weights = out.logits, out.weights
    assert torch.allclose(new_weights[:, 0], torch.ones(6), atol=1e-3)
    assert not torch.allclose(before, after)


def test_missing_modality_is_masked_and_weights_renormalise():
    torch.manual_seed(0)
    fusion = ModalityAttention(modalities=3, width=4)
    h = torch.randn(1, 3, 4)
    present = torch.tensor([[True, False, True]])
    z, alpha = fusion(h, present)
    assert alpha[0, 1] == 0
    assert torch.isclose(alpha.sum(), torch.tensor(1.0))
    # The missing modality's features cannot influence anything.
    h2 = h.clone()
    h2[0, 1] = 100.0
    z2, alpha2 = fusion(h2, present)
    assert torch.allclose(z, z2) and torch.allclose(alpha, alpha2)
    _, weights = Concatenation(3, 4)(h, present)
    assert torch.allclose(weights, torch.tensor([[0.5, 0.0, 0.5]]))


@pytest.mark.parametrize("kind", ["lstm", "gru", "transformer", "conv", "mlp"])
def test_padding_does_not_change_the_encoding(kind):
    torch.manual_seed(0)
    encoder = ENCODERS.get(kind)(4, 8, 2, 0.0).eval()
    lengths = torch.tensor([3, 5])
    x = torch.randn(2, 5, 4)
    x[0, 3:] = 0
    padded = torch.cat([x, torch.zeros(2, 4, 4)], dim=1)
    garbage = padded.clone()
    garbage[0, 3:] = 7.0  # whatever lies past the length must be ignored
    garbage[1, 5:] = -3.0
    with torch.no_grad():
        a = encoder(x, lengths)
        b = encoder(padded, lengths)
        c = encoder(garbage, lengths)
    assert a.shape == (2, 8)
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(a, c, atol=1e-5)


@pytest.mark.parametrize("encoder", ["lstm", "transformer"])
def test_network_output_shapes(encoder):
    model = MultimodalNetwork(_spec(encoder=encoder))
    out = model(_batch())
    assert out.logits.shape == (6, 2) and out.weights.shape == (6, 3)
    assert out.features.shape == (6, 3, 8) and out.unimodal_logits == {}


def test_load_pretrained_copies_encoder_and_drops_head():
    torch.manual_seed(0)
    spec = _spec()
    unimodal = MultimodalNetwork(spec.only("b"))
    torch.manual_seed(1)
    fused = MultimodalNetwork(spec)
    fused.load_pretrained("b", unimodal)
    for (name, p), (_, q) in zip(fused.encoders["b"].state_dict().items(),
                                 unimodal.encoders["b"].state_dict().items()):
        assert torch.equal(p, q), name
    assert fused.head[0].in_features == 3 * spec.width  # the fused head, not stage 1's


def test_attention_with_no_modality_present_gives_zeros_not_nan():
    fusion = ModalityAttention(modalities=3, width=4)
    h = torch.randn(2, 3, 4, requires_grad=True)
    present = torch.tensor([[False, False, False], [True, False, True]])
    z, alpha = fusion(h, present)
    assert torch.equal(alpha[0], torch.zeros(3)) and torch.equal(z[0], torch.zeros(12))
    assert torch.isclose(alpha[1].sum(), torch.tensor(1.0)) and alpha[1, 1] == 0
    (z.sum() + alpha.sum()).backward()
    assert torch.isfinite(h.grad).all() and torch.isfinite(fusion.score.weight.grad).all()



def test_saved_model_names_its_architecture(tmp_path):
    import json
    from dataclasses import replace

    from prefuse.errors import PrefuseError
    from prefuse.models.saving import load_model, save_model
    from prefuse.tasks import make_task

    torch.manual_seed(0)
    model = MultimodalNetwork(replace(_spec(), unimodal_heads=True)).eval()
    save_model(model, "pretrained+attention+multiloss", make_task("multiclass", 2), tmp_path)
    meta_path = tmp_path / "model.json"
    meta = json.loads(meta_path.read_text())
    assert meta["network"] == "simple" and meta["spec"]["unimodal_heads"]
    loaded, _, _ = load_model(tmp_path)
    assert torch.equal(loaded(_batch()).logits, model(_batch()).logits)
    # Saved before model.json named the architecture: a simple network.
    del meta["network"]
    meta_path.write_text(json.dumps(meta))
    assert isinstance(load_model(tmp_path)[0], MultimodalNetwork)
    meta["network"] = "magic"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(PrefuseError, match=str(tmp_path)):
        load_model(tmp_path)


def test_the_network_gives_its_encoders_their_own_learning_rate():
    model = MultimodalNetwork(_spec())
    optimizer = model.configure_optimizer(TrainConfig(lr=1e-2, encoder_lr=1e-4,
                                                      weight_decay=0.5))
    rest, encoders = optimizer.param_groups
    assert (rest["lr"], encoders["lr"]) == (1e-2, 1e-4)
    assert rest["weight_decay"] == encoders["weight_decay"] == 0.5
    assert [id(p) for p in encoders["params"]] == [id(p) for p in model.encoders.parameters()]
    owned = {id(p) for p in model.encoders.parameters()}
    assert [id(p) for p in rest["params"]] == \
        [id(p) for p in model.parameters() if id(p) not in owned]
    same = model.configure_optimizer(TrainConfig(lr=1e-2))  # encoder_lr 0: lr
    assert [g["lr"] for g in same.param_groups] == [1e-2, 1e-2]


def test_mult_and_the_ensemble_train_every_parameter_alike():
    for model in (MulT(_spec(fusion="mult")), UnimodalEnsemble(_spec(fusion="ensemble"))):
        (group,) = model.configure_optimizer(TrainConfig(lr=3e-3, encoder_lr=1e-5)).param_groups
        assert group["lr"] == 3e-3
        assert [id(p) for p in group["params"]] == [id(p) for p in model.parameters()]
