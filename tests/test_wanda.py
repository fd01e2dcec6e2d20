"""Wanda against its definition, |W_ij| * ||X_j||_2 (Sun et al. 2023): a tiny Linear by hand, Conv layers against
a brute-force im2col (torch.nn.functional.unfold, reordered to our 2-D view's (kh, kw, c_in) columns), per-row
comparison and N:M, and the calibration passes through the pruner and the app's config."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunelab.criteria import WandaCriterion, get_criterion
from prunelab.errors import ConfigError
from prunelab.pruner import Pruner
from prunelab.schedule import Schedule
from prunelab.sparsity.patterns import as_2d


def wanda_scores(model, layers, batches):
    crit = get_criterion("wanda", layers)
    crit.score_model(model, batches)
    return crit.scores


def test_linear_by_hand():
    """W = [[1, -2, 3], [-4, 0.5, 1]], inputs (2 batches, rows) x = [1, 2, 2], [0, 0, 1] | [2, 1, 2]:
    ||X_j|| = sqrt(1 + 0 + 4), sqrt(4 + 0 + 1), sqrt(4 + 1 + 4) = sqrt5, sqrt5, 3."""
    lin = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2.0, 3.0], [-4.0, 0.5, 1.0]]))
    batches = [(torch.tensor([[1.0, 2.0, 2.0], [0.0, 0.0, 1.0]]), torch.zeros(2)), (torch.tensor([[2.0, 1.0, 2.0]]),
                                                                                   torch.zeros(1))]
    s = wanda_scores(lin, {"l": lin}, batches)["l"]
    r5 = math.sqrt(5)
    torch.testing.assert_close(s, torch.tensor([[1 * r5, 2 * r5, 9.0], [4 * r5, 0.5 * r5, 3.0]]))


def test_linear_tokens_count_as_rows():
    """A Linear on [batch, tokens, features] (as in the paper's LLMs): every token is a row of X."""
    torch.manual_seed(0)
    lin = nn.Linear(5, 3)
    x = torch.randn(4, 7, 5)
    s = wanda_scores(lin, {"l": lin}, [(x, None)])["l"]
    torch.testing.assert_close(s, lin.weight.detach().abs() * x.reshape(-1, 5).norm(dim=0))


def brute_force_conv(conv, xs):
    """|W| * ||im2col column||, columns in our 2-D view's order: unfold gives (c_in, kh, kw) with c_in slowest;
    ours is (kh, kw, c_in) with c_in fastest."""
    kh, kw = conv.kernel_size
    sq = 0
    pad = conv.padding if not isinstance(conv.padding, str) else (kh // 2, kw // 2)  # 'same' (odd kernels here)
    for x in xs:
        mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
        x = F.pad(x, (pad[1], pad[1], pad[0], pad[0]), mode=mode)
        cols = F.unfold(x, (kh, kw), dilation=conv.dilation, stride=conv.stride)  # [B, C_in * kh * kw, L]
        sq = sq + cols.square().sum((0, 2))
    cin = conv.in_channels // conv.groups
    norms = sq.sqrt().reshape(conv.in_channels, kh, kw).permute(1, 2, 0)  # -> [kh, kw, C_in]
    if conv.groups == 1:
        return as_2d(conv.weight.detach()).abs() * norms.reshape(1, -1)
    per_out = []
    for o in range(conv.out_channels):
        grp = o // (conv.out_channels // conv.groups)
        per_out.append(norms[:, :, grp * cin:(grp + 1) * cin].reshape(-1))
    return as_2d(conv.weight.detach()).abs() * torch.stack(per_out)


@pytest.mark.parametrize("kwargs", [
    dict(in_channels=3, out_channels=4, kernel_size=3),
    dict(in_channels=3, out_channels=4, kernel_size=3, stride=2, padding=1),
    dict(in_channels=2, out_channels=3, kernel_size=(2, 3), dilation=2, padding=(1, 2)),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=1, groups=2),
    dict(in_channels=3, out_channels=2, kernel_size=3, padding=1, padding_mode="reflect"),
    dict(in_channels=3, out_channels=2, kernel_size=3, padding="same"),
])
def test_conv_against_brute_force_im2col(kwargs):
    torch.manual_seed(1)
    conv = nn.Conv2d(**kwargs)
    xs = [torch.randn(2, kwargs["in_channels"], 7, 9), torch.randn(3, kwargs["in_channels"], 7, 9)]
    s = wanda_scores(conv, {"c": conv}, [(x, None) for x in xs])["c"]
    assert s.shape == conv.weight.shape
    torch.testing.assert_close(as_2d(s), brute_force_conv(conv, xs), rtol=1e-5, atol=1e-6)


def test_conv1d_and_unbatched_input():
    """Conv1d through unfold on [B, C, 1, L] with a (1, k) kernel."""
    torch.manual_seed(2)
    conv = nn.Conv1d(3, 4, 3, stride=2, padding=1)
    x = torch.randn(2, 3, 11)
    s = wanda_scores(conv, {"c": conv}, [(x, None)])["c"]
    cols = F.unfold(x[:, :, None], (1, 3), padding=(0, 1), stride=(1, 2)).square().sum((0, 2))  # (c, k)
    want = conv.weight.detach().abs() * cols.reshape(3, 3).sqrt()[None]
    torch.testing.assert_close(s, want)
    one = wanda_scores(conv, {"c": conv}, [(x[0], None)])["c"]  # an unbatched [C, L] input is one sample
    torch.testing.assert_close(one, wanda_scores(conv, {"c": conv}, [(x[:1], None)])["c"])


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 5 * 5, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.relu(self.fc(torch.relu(self.conv(x)).flatten(1))))


def test_scores_see_the_masked_network_and_leave_no_trace():
    """Through the pruner: the fc layer's input norms come from the conv as masked; the model's mode is restored."""
    torch.manual_seed(3)
    model = TwoLayer()
    model.train()
    calib = [(torch.randn(6, 2, 5, 5), torch.zeros(6, dtype=torch.long)) for _ in range(2)]
    pruner = Pruner(model, "wanda", "1x1", Schedule(0.5, 0, 0), head="head", calibration=calib)
    assert pruner.distribution.name == "per_row"  # the criterion's default comparison group
    with torch.no_grad():  # as if an earlier pruning step had masked the conv's first output channel
        model.conv.weight[0] = 0
        model.conv.bias[0] = 0
        feats = torch.cat([torch.relu(model.conv(x)).flatten(1) for x, _ in calib])
        want = model.fc.weight.detach().abs() * feats.norm(dim=0)  # before this step's masks
    pruner.on_step_begin(0)
    assert model.training
    torch.testing.assert_close(pruner.criterion.scores["fc"], want)
    assert bool((pruner.criterion.scores["fc"][:, :25] == 0).all())  # the masked channel's features are all 0
    for name in ("conv", "fc"):  # per row: every output row lost half its weights
        rows = pruner.masks[name].reshape(pruner.masks[name].shape[0], -1)
        assert (rows.shape[1] - rows.sum(1)).tolist() == [rows.shape[1] // 2] * rows.shape[0]


def test_per_row_masks_and_n_m_against_brute_force():
    torch.manual_seed(4)
    lin = nn.Linear(8, 4, bias=False)
    calib = [(torch.randn(10, 8), torch.zeros(10, dtype=torch.long))]
    score = lin.weight.detach().abs() * calib[0][0].norm(dim=0)
    pruner = Pruner({"l": lin}, "wanda", "1x1", Schedule(0.75, 0, 0), calibration=calib)
    pruner.bind(model=lin)
    pruner.on_step_begin(0)
    want = torch.ones(4, 8, dtype=torch.bool)
    want.scatter_(1, score.argsort(1)[:, :6], False)  # each row: its 6 lowest scores go (no ties here)
    assert torch.equal(pruner.masks["l"], want)
    torch.manual_seed(4)
    lin2 = nn.Linear(8, 4, bias=False)  # a dense layer again (the masks above zeroed lin's weights)
    score = lin2.weight.detach().abs() * calib[0][0].norm(dim=0)
    nm = Pruner({"l": lin2}, "wanda", "2:4", Schedule(0.5, 0, 0), calibration=calib)
    nm.bind(model=lin2)
    nm.on_step_begin(0)
    groups = score.reshape(4, 2, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(2, groups.argsort(2, descending=True)[..., :2], True)  # the 2 highest of every 4 inputs
    assert torch.equal(nm.masks["l"], keep.reshape(4, 8))


def test_global_wanda_is_allowed_and_options_are_checked():
    lin = nn.Linear(4, 2)
    p = Pruner({"l": lin}, "wanda", "1x1", Schedule(0.5, 0, 0), distribution="global")
    assert p.distribution.name == "global"
    crit = get_criterion({"criterion_type": "wanda", "batches": 2, "batch_size": 16}, {"l": lin})
    assert (crit.calibration.batches, crit.calibration.batch_size) == (2, 16)
    with pytest.raises(ConfigError, match=r"^criterion.batches=0: an integer >= 1"):
        get_criterion({"criterion_type": "wanda", "batches": 0}, {"l": lin})
    with pytest.raises(ConfigError, match=r"^modules\['l'\]='Tensor': an nn.Linear or nn.Conv1d/2d/3d layer"):
        get_criterion("wanda", {"l": torch.zeros(2, 4, requires_grad=True)})
    with pytest.raises(ConfigError, match="ConvTranspose2d"):
        get_criterion("wanda", {"l": nn.ConvTranspose2d(2, 2, 3)})


def test_the_yaml_selects_the_declared_default_distribution():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from appkit import compose

    assert compose(["criterion=wanda"]).distribution.name == WandaCriterion.default_distribution == "per_row"
    assert compose(["criterion=wanda", "distribution=erk"]).distribution.name == "erk"  # the command line wins
    assert compose(["criterion=magnitude"]).distribution.name == "global"
