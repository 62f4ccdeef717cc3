"""``hydrocast evaluate --seeds``: the summary over seeds, against sums done by hand."""

import numpy as np
import pandas as pd
import pytest

from hydrocast.errors import BadInputError
from hydrocast.seeds import SeedsResult, nest, parse_seeds, render_table, summarise


def _rows():
    # two periods, three seeds, two leads; the lumped LSTM's seed 2 at lead 2 has no score
    rows = []
    conv = {("test", 1): [0.90, 0.80, 0.70], ("test", 2): [0.50, 0.60, 0.40],
            ("validation", 1): [0.85, 0.75, 0.95], ("validation", 2): [0.30, 0.20, 0.10]}
    lum = {("test", 1): [0.85, 0.85, 0.60], ("test", 2): [0.55, 0.50, np.nan],
           ("validation", 1): [0.80, 0.80, 0.80], ("validation", 2): [0.40, 0.10, 0.00]}
    for (period, lead), vals in conv.items():
        for s, v in zip((0, 1, 2), vals):
            rows.append({"period": period, "seed": s, "model": "convlstm", "lead_days": lead, "nse": v, "kge": v / 2})
            rows.append({"period": period, "seed": s, "model": "lumped_lstm", "lead_days": lead,
                         "nse": lum[period, lead][s], "kge": 0.1})
            rows.append({"period": period, "seed": s, "model": "persistence", "lead_days": lead, "nse": 0.5,
                         "kge": 0.2})
    return pd.DataFrame(rows)


def test_summary_means_and_the_lead_over_the_lumped_lstm_by_hand():
    s = summarise(_rows()).set_index(["period", "model", "lead_days"])
    c = s.loc[("test", "convlstm", 1)]
    assert c["nse_mean"] == pytest.approx(0.8) and c["nse_min"] == pytest.approx(0.7)
    assert c["nse_max"] == pytest.approx(0.9) and c["kge_mean"] == pytest.approx(0.4) and c["seeds"] == 3
    # (0.90 - 0.85) + (0.80 - 0.85) + (0.70 - 0.60) = 0.10 over 3 seeds; ahead on seeds 0 and 2
    assert c["nse_minus_lumped"] == pytest.approx(0.1 / 3) and c["seeds_ahead"] == 2
    # the lumped LSTM's missing seed 2 drops out of the pairs: (0.50 - 0.55) + (0.60 - 0.50) over 2
    c2 = s.loc[("test", "convlstm", 2)]
    assert c2["nse_minus_lumped"] == pytest.approx(0.025) and c2["seeds_ahead"] == 1
    assert s.loc[("test", "lumped_lstm", 2)]["nse_mean"] == pytest.approx(0.525)
    v = s.loc[("validation", "convlstm", 2)]
    assert v["nse_minus_lumped"] == pytest.approx(np.mean([-0.1, 0.1, 0.1])) and v["seeds_ahead"] == 2
    # only the ConvLSTM rows carry the comparison
    assert np.isnan(s.loc[("test", "persistence", 1)]["nse_minus_lumped"])
    assert s.loc[("validation", "persistence", 1)]["nse_mean"] == pytest.approx(0.5)
    assert len(s) == 2 * 3 * 2


@pytest.mark.parametrize("text", ["1", "0,0", "a,b", "-1,2", ""])
def test_bad_seed_lists_are_refused(text):
    with pytest.raises(BadInputError, match="--seeds"):
        parse_seeds(text)


def test_seed_lists_parse():
    assert parse_seeds("3, 1,2") == [3, 1, 2]


def test_the_table_shows_the_means_ranges_and_seeds_ahead():
    from rich.console import Console

    nested = nest(summarise(_rows()))
    assert nested["test"]["convlstm"][1]["seeds_ahead"] == 2
    assert nested["test"]["persistence"][1]["seeds_ahead"] is None
    console = Console(width=200, record=True)
    console.print(render_table(SeedsResult([0, 1, 2], {}, "", "", nested)))
    text = console.export_text()
    row = next(line for line in text.splitlines() if "test" in line and "0.800 (0.700 .. 0.900)" in line)
    assert "+0.033" in row and "2/3" in row and "0.500" in row  # lead over the lumped LSTM, persistence
