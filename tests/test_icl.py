import numpy as np
import torch

from imitlib.icl import ICLConfig, LinearSelfAttention, LSAModel, compare, gd_predict, sample_tasks, train_lsa, tune_gd


def test_lsa_forward_matches_a_hand_computed_case():
    layer = LinearSelfAttention(2)
    with torch.no_grad():
        for p in (layer.q, layer.k, layer.v, layer.p):
            p.copy_(torch.eye(2))
    e = torch.tensor([[[1.0, 2.0], [3.0, -1.0], [0.5, 0.0]]])  # two context tokens, one query
    # every token j gets (1/2) * sum over context i of e_i * (e_i . e_j)
    expected = e[0].clone()
    for j in range(3):
        expected[j] += 0.5 * sum(e[0, i] * float(e[0, i] @ e[0, j]) for i in range(2))
    torch.testing.assert_close(layer(e)[0], expected)


def test_gd_step_is_the_closed_form_and_two_steps_follow_the_gradient():
    cfg = ICLConfig(dim=3, n_context=4)
    tokens, _ = sample_tasks(cfg, 5, torch.Generator().manual_seed(0))
    x, y, xq = tokens[:, :-1, :-1].numpy(), tokens[:, :-1, -1].numpy(), tokens[:, -1, :-1].numpy()
    one = (0.7 / 4) * np.einsum("nt,ntd,nd->n", y, x, xq)
    np.testing.assert_allclose(gd_predict(tokens, 0.7, 1).numpy(), one, rtol=1e-5)
    w = np.zeros((5, 3))
    for _ in range(2):
        grad = np.einsum("nt,ntd->nd", np.einsum("nd,ntd->nt", w, x) - y, x) / 4
        w -= 0.7 * grad
    np.testing.assert_allclose(gd_predict(tokens, 0.7, 2).numpy(), (w * xq).sum(-1), rtol=1e-4, atol=1e-6)


def test_one_lsa_layer_can_be_exactly_one_gd_step():
    cfg = ICLConfig(dim=4, n_context=6)
    tokens, _ = sample_tasks(cfg, 32, torch.Generator().manual_seed(1))
    model = LSAModel(5, layers=1)
    x_part = torch.diag(torch.tensor([1.0, 1, 1, 1, 0]))
    with torch.no_grad():
        layer = model.layers[0]
        layer.q.copy_(x_part), layer.k.copy_(x_part)
        layer.v.copy_(torch.diag(torch.tensor([0.0, 0, 0, 0, 1])))
        layer.p.copy_(-0.9 * torch.eye(5))
    torch.testing.assert_close(model(tokens), gd_predict(tokens, 0.9, 1))
    out = compare(ICLConfig(dim=4, n_context=6, eval_tasks=500), model, 0.9)
    assert out["prediction_diff"] < 1e-10 and out["sensitivity_cosine"] > 0.9999


def test_a_trained_layer_beats_predicting_zero_and_tuned_gd_beats_a_bad_step():
    cfg = ICLConfig(dim=4, n_context=8, train_steps=300, batch_size=256, lr=1e-2, eval_tasks=2000)
    model, losses = train_lsa(cfg, layers=1)
    eta = tune_gd(cfg)
    out = compare(cfg, model, eta)
    assert losses[-20:].mean() < losses[:20].mean()
    assert out["loss_model"] < 0.8 * out["loss_zero"]
    assert out["loss_gd"] <= compare(cfg, model, eta * 3)["loss_gd"]
