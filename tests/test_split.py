import numpy as np
import pandas as pd
import pytest

from peru_sentiment.data.split import SPLITS, check_leakage, split_feedback
from peru_sentiment.errors import DataError

TEMPLATES = {
    "negative": ["la comida llegó fría en {}", "demoró un montón el pedido a {}", "the courier got lost near {}"],
    "neutral": ["pedí un lomo saltado en {}", "pagué con Yape desde {}", "I ordered dinner from {}"],
    "positive": ["bacán el servicio en {}", "llegó al toque a {}", "great food, fast delivery to {}"],
}


WORDS = [
    "miraflores",
    "surco",
    "cusco",
    "trujillo",
    "arequipa",
    "piura",
    "chiclayo",
    "iquitos",
    "huancayo",
    "puno",
    "tacna",
    "ica",
    "ayer",
    "hoy",
    "noche",
    "tarde",
    "lunes",
    "martes",
    "sábado",
    "domingo",
    "almuerzo",
    "cena",
    "ceviche",
    "lomo",
    "chaufa",
    "pollo",
    "causa",
    "pizza",
    "sushi",
    "jugo",
    "postre",
    "mamá",
    "papá",
    "oficina",
    "casa",
    "depa",
    "hermano",
    "amigo",
    "trabajo",
    "universidad",
    "parque",
    "lluvia",
    "frío",
    "calor",
]


def _pool(rows: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    records = []
    for i in range(rows):
        label = ("negative", "neutral", "positive")[i % 3]
        template = TEMPLATES[label][i % 9 // 3]
        text = template.format(" ".join(rng.choice(WORDS, size=6)))
        records.append(
            {
                "feedback_id": f"r{i}",
                "text": text,
                "label": label,
                "role": "train",
                "language": "en" if template[0] in "tg" else "es",
                "text_classical": text,
            }
        )
    # exact and near duplicates that must stay together
    records += [dict(records[0], feedback_id="dup-exact", text=records[0]["text"].upper())]
    records += [dict(records[1], feedback_id="dup-near", text=records[1]["text"] + "!!")]
    records += [dict(records[2], feedback_id="ext", role="external", text="una reseña real que no se parece a ninguna")]
    records += [dict(records[5], feedback_id="ext-seen", role="external")]  # a real review the pool already has
    return pd.DataFrame(records)


def test_split_sizes_strata_and_no_leakage(params):
    frame = _pool()
    splits, overlap, topics, summary = split_feedback(frame, params.split, params.near_duplicates)
    assert summary["rows_in"] == summary["rows_out"] + len(overlap) == len(frame)
    assert overlap[["feedback_id", "duplicate_of"]].values.tolist() == [["ext-seen", "r5"]]
    sizes = {name: len(splits[name]) for name in SPLITS}
    assert sizes["test"] == pytest.approx(0.1 * 603, abs=15) and sizes["validation"] == pytest.approx(0.1 * 603, abs=15)
    assert list(splits["external"]["feedback_id"]) == ["ext"]
    where = {fid: name for name in SPLITS for fid in splits[name]["feedback_id"]}
    assert where["dup-exact"] == where["r0"] and where["dup-near"] == where["r1"]
    for name in SPLITS:
        assert splits[name]["label"].value_counts(normalize=True).min() > 0.25
        assert splits[name]["topic_id"].between(-1, params.split.topics.n_topics - 1).all()
    assert len(topics) == params.split.topics.n_topics


def test_leakage_check_fails_on_crossing_duplicates(params):
    frame = _pool(30).iloc[:30]
    splits = {
        "train": frame.iloc[:20],
        "test": pd.concat(
            [frame.iloc[20:], frame.iloc[[3]].assign(feedback_id="copy", text=frame.iloc[3]["text"] + ".")]
        ),
    }
    with pytest.raises(DataError, match=r"1 duplicate texts cross splits, e\.g\. r3 \(train\) ~ copy \(test\)"):
        check_leakage(splits, params.near_duplicates)
