"""The contamination audit finds exam questions planted in training data, in English and Japanese.

Each exam below has one question per way a question can leak (verbatim; re-spaced, re-punctuated and
re-cased; choices reordered; a long span of the stem inside a longer document; a copy with a few words
changed) and clean controls that share only the exam's common phrasing with the training data ("Which
of the following is the most likely diagnosis?", a vital-signs sentence, 最も考えられるのはどれか,
心音と呼吸音とに異常を認めない). The training data mixes instruction records, exam records, pretraining
documents (JSON Lines and plain text) and filler; every test asserts each question's flag and the
`file:line` of its closest training record.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from medtune.config.exam_schema import ExamConfig
from medtune.errors import ConfigError
from medtune.exam.contamination import ContaminationConfig, ExamIndex, TrainingText, audit_contamination
from medtune.exam.contamination_report import Flag, accuracy_by_contamination
from medtune.exam.contamination_sources import (
    question_text,
    record_text,
    run_training_texts,
    training_texts,
    worked_example_texts,
)
from medtune.exam.contamination_text import canonical_question, canonical_training_text, normalise
from medtune.vocabulary import ExamQuestion


def question(qid: str, stem: str, choices: list[str], answer: str = "a") -> ExamQuestion:
    return ExamQuestion(qid=qid, question=stem, choices=tuple(choices), answers=(answer,), source=f"exam:{qid}")


# --- English --------------------------------------------------------------------------------------------

EN = {
    "verbatim": question(
        "en-verbatim",
        "A 67-year-old man with a 40 pack-year smoking history presents with hemoptysis, weight loss and "
        "confusion. Serum sodium is 121 mEq/L and urine osmolality is inappropriately high. Chest radiography "
        "shows a central hilar mass. Which of the following is the most likely histologic type of this tumor?",
        ["Adenocarcinoma", "Squamous cell carcinoma", "Small cell carcinoma", "Large cell carcinoma", "Carcinoid"],
        "c",
    ),
    "respaced": question(
        "en-respaced",
        "A 29-year-old woman has palpitations, heat intolerance and a fine tremor of the outstretched hands. "
        "Her thyroid gland is diffusely enlarged with a bruit, and she has bilateral proptosis. Which of the "
        "following antibodies is responsible for her condition?",
        ["Anti-thyroid peroxidase", "TSH receptor-stimulating", "Anti-thyroglobulin", "Anti-centromere", "Anti-Smith"],
        "b",
    ),
    "reordered": question(
        "en-reordered",
        "A 4-year-old boy has had periorbital edema for one week. Urinalysis shows 4+ protein without blood, "
        "and serum albumin is 1.9 g/dL. Which of the following is most likely to be seen on electron microscopy "
        "of a renal biopsy specimen?",
        [
            "Effacement of podocyte foot processes",
            "Subepithelial humps",
            "Splitting of the basement membrane",
            "Mesangial IgA deposits",
            "Tram-track appearance",
        ],
    ),
    "partial": question(
        "en-partial",
        "A 52-year-old woman with rheumatoid arthritis treated with methotrexate for six years develops a dry "
        "cough and progressive dyspnea over three weeks; bilateral interstitial infiltrates are seen on chest "
        "radiography and she has a low-grade fever. Which of the following is the most appropriate next step?",
        [
            "Discontinue methotrexate",
            "Start a fluoroquinolone",
            "Increase the methotrexate dose",
            "Add folic acid only",
            "Order spirometry in six months",
        ],
    ),
    "near": question(
        "en-near",
        "A 61-year-old man with alcohol use disorder is brought to the emergency department with confusion, "
        "an unsteady gait and horizontal nystagmus on lateral gaze. He has not eaten a proper meal for weeks. "
        "Which vitamin should be given before any glucose-containing fluid?",
        ["Thiamine", "Niacin", "Cobalamin", "Folate", "Pyridoxine"],
    ),
    "clean-diagnosis": question(
        "en-clean-1",
        "A 45-year-old woman presents with fatigue and pain in the small joints of both hands for 3 months. "
        "Her blood pressure is 120/80 mm Hg. Antinuclear antibodies and anti-dsDNA are positive. Which of the "
        "following is the most likely diagnosis?",
        ["Systemic lupus erythematosus", "Gout", "Osteoarthritis", "Reactive arthritis", "Fibromyalgia"],
    ),
    "clean-treatment": question(
        "en-clean-2",
        "A 33-year-old man has a painful red eye with photophobia after a week of low back pain and morning "
        "stiffness that improves with exercise. Which of the following is the most appropriate initial therapy "
        "for his back pain?",
        ["Nonsteroidal anti-inflammatory drugs", "Opioids", "Bed rest", "Spinal fusion", "Colchicine"],
    ),
}

EN_FILLER = [
    {
        "instruction": "Explain what an ACE inhibitor is to a patient.",
        "input": "",
        "output": "An ACE inhibitor is a blood pressure medicine that relaxes the blood vessels.",
    },
    {
        "instruction": "A 45-year-old woman presents with a painless neck mass for 2 months. Her blood pressure is "
        "120/80 mm Hg. Fine-needle aspiration shows papillary cells with grooved nuclei. Which of the "
        "following is the most likely diagnosis?",
        "input": "",
        "output": "Papillary thyroid carcinoma, the most common thyroid cancer.",
    },
    {
        "instruction": "Which of the following is the most appropriate initial therapy for a 33-year-old man with a "
        "painful red eye and photophobia?",
        "input": "",
        "output": "Topical corticosteroids and a "
        "cycloplegic agent, after an ophthalmologist confirms anterior uveitis.",
    },
]


def english_training(tmp_path: Path) -> tuple[list[Path], dict[str, str]]:
    """The English training files, and where each planted copy is (question key -> file:line)."""
    q = EN
    instructions = tmp_path / "en_instructions.jsonl"
    records = [
        *EN_FILLER[:2],
        {
            "instruction": q["verbatim"].question,
            "input": question_text(q["verbatim"]).split("\n\n")[1],
            "output": "c. Small cell carcinoma",
        },
        EN_FILLER[2],
        # re-spaced, re-punctuated, re-cased, choices run together on one line
        {
            "instruction": "Answer the question.\n\nA 29 year old woman has palpitations -- heat intolerance, and a "
            "FINE TREMOR of the  outstretched\nhands; her thyroid gland is diffusely enlarged with a "
            "bruit and she has bilateral   proptosis...  Which of the following antibodies is "
            "responsible for her condition ?",
            "input": "(A) anti thyroid peroxidase  (B) TSH-receptor stimulating (C) anti thyroglobulin "
            "(D) anti centromere (E) anti Smith",
            "output": "(B)",
        },
        # a near-duplicate: one word changed every few words, so no 13 words in a row survive
        {
            "instruction": "A 61-year-old man with alcohol use disorder is taken to the emergency department with "
            "confusion, an unstable gait and horizontal nystagmus on lateral gaze. He has not had a "
            "proper meal for weeks. Which vitamin must be given before any glucose-containing fluid?",
            "input": "a. Thiamine\nb. Niacin\nc. Cobalamin\nd. Folate\ne. Pyridoxine",
            "output": "a. Thiamine",
        },
    ]
    instructions.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    exam_records = tmp_path / "en_exam_records.jsonl"
    reordered = q["reordered"]
    exam_records.write_text(
        json.dumps(
            {
                "problem_id": "x1",
                "problem_text": "How is nephrotic syndrome diagnosed in adults?",
                "choices": ["Urine protein", "Blood culture"],
                "answer": ["a"],
            }
        )
        + "\n"
        + json.dumps(
            {
                "problem_id": "x2",
                "problem_text": reordered.question,
                "choices": list(reversed(reordered.choices)),
                "answer": ["e"],
            }
        )
        + "\n",
        encoding="utf-8",
    )
    corpus = tmp_path / "en_corpus.txt"
    corpus.write_text(
        "Methotrexate is an antimetabolite used in rheumatoid arthritis.\nIt is taken once a week.\n\n"
        "Pulmonary toxicity is rare but serious. In one report, a 52-year-old woman with rheumatoid arthritis "
        "treated with methotrexate for six years develops a dry cough and progressive dyspnea over three weeks, "
        "and the drug was stopped. Most patients recover when the drug is withdrawn and corticosteroids are given.\n",
        encoding="utf-8",
    )
    where = {
        "verbatim": f"{instructions}:3",
        "respaced": f"{instructions}:5",
        "near": f"{instructions}:6",
        "reordered": f"{exam_records}:2",
        "partial": f"{corpus}:4",
    }
    return [instructions, exam_records, corpus], where


EXPECTED = {
    "verbatim": Flag.exact,
    "respaced": Flag.exact,
    "reordered": Flag.exact,
    "partial": Flag.ngram,
    "near": Flag.near_duplicate,
}


def test_english_planted_overlaps_are_flagged_with_their_records(tmp_path):
    files, where = english_training(tmp_path)
    report = audit_contamination(list(EN.values()), training_texts(files))
    verdicts = {key: report.by_id()[q.qid] for key, q in EN.items()}
    for key, flag in EXPECTED.items():
        assert verdicts[key].flag == flag, (key, verdicts[key])
        assert verdicts[key].closest is not None and verdicts[key].closest.source == where[key], key
    for key in ("clean-diagnosis", "clean-treatment"):
        assert verdicts[key].flag == Flag.clean, verdicts[key]
    # the near-duplicate shares no 13 words in a row; the partial copy is no near-duplicate
    assert verdicts["near"].ngram_matches == 0 and verdicts["near"].similarity >= 85
    assert verdicts["partial"].ngram_matches >= 1 and verdicts["partial"].similarity < 85
    assert "methotrexate for six years" in verdicts["partial"].closest.excerpt


# --- Japanese -------------------------------------------------------------------------------------------

JA = {
    "verbatim": question(
        "ja-verbatim",
        "45歳の女性。3か月前からの全身倦怠感と体重減少とを主訴に来院した。皮膚と口腔粘膜とに色素沈着を認める。"
        "血圧 88/56 mmHg。血液所見で低ナトリウム血症と高カリウム血症とを認める。最も考えられるのはどれか。",
        ["Cushing症候群", "Addison病", "原発性アルドステロン症", "褐色細胞腫", "甲状腺機能低下症"],
        "b",
    ),
    "respaced": question(
        "ja-respaced",
        "72歳の男性。2日前からの左下腹部痛と38.2℃の発熱とを主訴に来院した。左下腹部に圧痛と反跳痛とを認める。"
        "腹部造影CTで S状結腸の壁肥厚と周囲の脂肪織濃度上昇とを認める。最も考えられるのはどれか。",
        ["急性虫垂炎", "S状結腸憩室炎", "虚血性大腸炎", "潰瘍性大腸炎", "大腸癌"],
        "b",
    ),
    "reordered": question(
        "ja-reordered",
        "妊娠32週の初産婦。頭痛と視野のちらつきとを訴えて来院した。血圧 168/112 mmHg。尿蛋白 3+。"
        "血小板数 6.8万。AST と LD との上昇を認める。この病態で最も注意すべき合併症はどれか。",
        ["子癇発作", "羊水過多", "前置胎盤", "妊娠糖尿病", "子宮内反症"],
    ),
    "partial": question(
        "ja-partial",
        "38歳の男性。健康診断で肝機能異常を指摘されて来院した。飲酒は機会飲酒。HBs抗原陰性、HCV抗体陽性で、"
        "HCV-RNA が検出された。肝生検で軽度の線維化を認める。治療として最も適切なのはどれか。",
        ["直接作用型抗ウイルス薬", "副腎皮質ステロイド", "肝移植", "経過観察のみ", "瀉血療法"],
    ),
    "near": question(
        "ja-near",
        "25歳の女性。1週間前から続く動悸と手指のふるえとを主訴に来院した。体重は2か月で4kg減少した。"
        "甲状腺のびまん性腫大と眼球突出とを認める。血中TSHは測定感度以下である。この疾患の原因となる自己抗体はどれか。",
        ["抗TSH受容体抗体", "抗サイログロブリン抗体", "抗核抗体", "抗アセチルコリン受容体抗体", "抗GAD抗体"],
    ),
    "clean-vitals": question(
        "ja-clean-1",
        "60歳の男性。3日前からの咳嗽と発熱とを主訴に来院した。体温 38.5℃。心音と呼吸音とに異常を認めない。"
        "胸部エックス線写真で右下肺野に浸潤影を認める。最も考えられるのはどれか。",
        ["細菌性肺炎", "肺結核", "肺癌", "気胸", "心不全"],
    ),
    "clean-question-line": question(
        "ja-clean-2",
        "慢性腎臓病の患者で高カリウム血症をきたしやすい薬剤はどれか。",
        ["アンジオテンシンII受容体拮抗薬", "ループ利尿薬", "サイアザイド系利尿薬", "カルシウム拮抗薬", "α遮断薬"],
    ),
}

JA_FILLER = [
    {
        "instruction": "次の症例の診断を答えてください。",
        "input": "50歳の男性。1週間前からの咽頭痛と発熱とを主訴に来院した。体温 37.8℃。心音と呼吸音とに異常を認めない。"
        "腹部は平坦、軟で、肝・脾を触知しない。最も考えられるのはどれか。",
        "output": "急性上気道炎",
    },
    {
        "instruction": "高カリウム血症の治療を説明してください。",
        "input": "",
        "output": "グルコン酸カルシウムで心筋を保護し、インスリンとブドウ糖でカリウムを細胞内に移動させる。",
    },
]


def japanese_training(tmp_path: Path) -> tuple[list[Path], dict[str, str]]:
    """The Japanese training files, and where each planted copy is (question key -> file:line)."""
    q = JA
    instructions = tmp_path / "ja_instructions.jsonl"
    respaced = q["respaced"]
    records = [
        JA_FILLER[0],
        {
            "instruction": q["verbatim"].question,
            "input": question_text(q["verbatim"]).split("\n\n")[1],
            "output": "b. Addison病",
        },
        JA_FILLER[1],
        # full-width letters and digits, spaces and line breaks inserted, 、 and 。 changed, choices in ①-⑤
        {
            "instruction": "７２歳の男性 ２日前からの 左下腹部痛と３８．２°Ｃの発熱とを主訴に来院した, 左下腹部に圧痛と反跳痛とを"
            "認める\n腹部造影ＣＴでＳ状結腸の壁肥厚と 周囲の脂肪織濃度上昇とを認める. 最も考えられるのはどれか?",
            "input": "\n".join(f"{n} {c}" for n, c in zip("①②③④⑤", respaced.choices)),
            "output": "②",
        },
        # a near-duplicate: a few words changed, never 20 characters in a row left unchanged
        {
            "instruction": "26歳の女性。1週間前から続く動悸と手のふるえとを主訴に受診した。体重は2か月で5kg減った。"
            "甲状腺のびまん性腫大と眼球突出とがみられる。血中TSHは測定感度以下であった。この疾患の原因となる"
            "自己抗体はどれか。",
            "input": "a. 抗TSH受容体抗体\nb. 抗サイログロブリン抗体\nc. 抗核抗体\nd. 抗アセチルコリン受容体抗体\ne. 抗GAD抗体",
            "output": "a. 抗TSH受容体抗体",
        },
    ]
    instructions.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    exam_records = tmp_path / "ja_exam_records.jsonl"
    reordered = q["reordered"]
    exam_records.write_text(
        json.dumps(
            {
                "problem_id": "y1",
                "problem_text": reordered.question,
                "choices": sorted(reordered.choices),
                "answer": ["a"],
            },
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    corpus = tmp_path / "ja_corpus.jsonl"
    documents = [
        {"text": "C型肝炎は HCV の感染による。現在はインターフェロンを用いない治療が主流である。"},
        {
            "text": "C型肝炎の症例。健康診断で肝機能異常を指摘されて来院した。飲酒は機会飲酒。HBs抗原陰性、HCV抗体陽性で、"
            "HCV-RNA が検出された。直接作用型抗ウイルス薬の内服により、12週間でウイルスは消失した。"
        },
    ]
    corpus.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in documents), encoding="utf-8")
    where = {
        "verbatim": f"{instructions}:2",
        "respaced": f"{instructions}:4",
        "near": f"{instructions}:5",
        "reordered": f"{exam_records}:1",
        "partial": f"{corpus}:2",
    }
    return [instructions, exam_records, corpus], where


def test_japanese_planted_overlaps_are_flagged_with_their_records(tmp_path):
    files, where = japanese_training(tmp_path)
    report = audit_contamination(list(JA.values()), training_texts(files))
    verdicts = {key: report.by_id()[q.qid] for key, q in JA.items()}
    for key, flag in EXPECTED.items():
        assert verdicts[key].flag == flag, (key, verdicts[key])
        assert verdicts[key].closest is not None and verdicts[key].closest.source == where[key], key
    for key in ("clean-vitals", "clean-question-line"):
        assert verdicts[key].flag == Flag.clean, verdicts[key]
    assert verdicts["near"].ngram_matches == 0 and verdicts["near"].similarity >= 85
    assert verdicts["partial"].ngram_matches >= 1 and verdicts["partial"].similarity < 85
    assert "健康診断で肝機能異常を指摘されて来院した" in verdicts["partial"].closest.excerpt


def test_clean_controls_stay_clean_even_when_compared_with_every_text(tmp_path):
    """candidate_share=0 compares a question with every text sharing one shingle: the controls' closest
    records are the ones sharing their stock phrases, and stay well below the similarity threshold."""
    everything = ContaminationConfig(candidate_share=0.0)
    for exam, make, key, line in (
        (EN, english_training, "clean-diagnosis", 2),
        (JA, japanese_training, "clean-vitals", 1),
    ):
        files, _ = make(tmp_path)
        verdict = audit_contamination(list(exam.values()), training_texts(files), everything).by_id()[exam[key].qid]
        assert verdict.flag == Flag.clean and verdict.ngram_matches == 0
        assert verdict.closest.source == f"{files[0]}:{line}" and 50 < verdict.similarity < 85, verdict


def test_exam_boilerplate_is_no_evidence():
    """A long sentence that several exam questions share is the exam's boilerplate: a training text
    holding it flags none of them; a sentence of one question alone flags that question."""
    shared = "Vital signs are within normal limits and the physical examination shows no other abnormalities."
    questions = [
        question(
            f"b{i}", f"A {20 + i}-year-old patient has condition number {i}. {shared} What is the cause?", ["X", "Y"]
        )
        for i in range(5)
    ]
    own = "A 22-year-old patient has condition number 2. Vital signs are within normal limits and the physical"
    report = audit_contamination(
        questions, [TrainingText("a.txt:1", f"Notes. {shared} End."), TrainingText("b.txt:7", own)]
    ).by_id()
    assert [report[q.qid].flag for q in questions] == [Flag.clean, Flag.clean, Flag.ngram, Flag.clean, Flag.clean]
    assert report["b2"].closest.source == "b.txt:7"


def test_normalisation_and_canonical_choice_order():
    assert normalise("Ａ　67-year-old  MAN,\thas… ＣＴ findings!") == "a 67 year old man has ct findings"
    assert normalise("７２歳の男性。 ２日前から、発熱") == normalise("72歳の男性 2日前から 発熱")
    stem = "Which drug?"
    assert (
        canonical_question(stem, ["Beta", "alpha", "Gamma"])[0]
        == canonical_question(stem, ["gamma", "Beta", "ALPHA"])[0]
    )
    assert canonical_question(stem, ["Beta", "alpha"])[0] == "which drug alpha beta"
    text = "Which drug?\n(A) Beta\n(B) alpha\n\nAnswer: (B)\n1. not a choice list alone"
    assert canonical_training_text(text) == "which drug alpha beta answer b 1 not a choice list alone"


def test_record_text_reads_every_training_format(tmp_path):
    assert record_text({"instruction": "Q", "input": None, "output": "A"}) == "Q\n\nA"
    assert record_text({"prompt": "P", "response": "R"}) == "P\n\nR"
    exam = {"problem_text": "S", "choices": ["x", 2], "answer": ["a"], "explanation": "E", "choices_orig": "[x,2]"}
    assert record_text(exam) == "S\n\na. x\nb. 2\n\nE"
    assert record_text({"text": "doc", "language": "en"}) == "doc"
    assert record_text({"body": "doc"}, text_field="body") == "doc"
    assert record_text({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}) == (
        "hi\n\nyo"
    )
    assert record_text({"meta": {"title": "T"}, "parts": ["p1", 3, "p2"]}) == "T\n\np1\n\np2"
    document = tmp_path / "notes.md"
    document.write_text("# Title\n\nfirst line\nsecond line\n\n\nlast\n", encoding="utf-8")
    assert list(training_texts([tmp_path])) == [
        TrainingText(f"{document}:1", "# Title"),
        TrainingText(f"{document}:3", "first line\nsecond line"),
        TrainingText(f"{document}:7", "last"),
    ]


def test_worked_examples_are_training_text(tmp_path):
    """A worked example of the prompt that is an exam question (under another id) is found, named by the
    few-shot file's line; the bundled exemplars are read when the exam names no file."""
    target = JA["verbatim"]
    fewshot = tmp_path / "fewshot.jsonl"
    rows = [
        {
            "problem_id": "F1",
            "problem_text": "別の問題。",
            "choices": ["甲", "乙"],
            "answer": ["a"],
            "explanation": "説明",
        },
        {
            "problem_id": "F2",
            "problem_text": target.question,
            "choices": list(target.choices),
            "answer": ["b"],
            "explanation": "副腎不全である。",
        },
    ]
    fewshot.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    exam = ExamConfig(name="t", path=None, language="ja", fewshot_path=str(fewshot))
    verdict = audit_contamination([target], worked_example_texts(exam)).results[0]
    assert verdict.flag == Flag.exact and verdict.closest.source == f"{fewshot}:2"
    bundled = list(worked_example_texts(ExamConfig(name="sample", path=None, language="ja")))
    assert bundled and bundled[0].source.endswith("fewshot_ja.jsonl:1") and "鉄欠乏性貧血" in bundled[0].text


def test_a_training_runs_files_are_read(typed, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"instruction": EN["near"].question, "input": "", "output": "Thiamine"}) + "\n")
    texts = list(run_training_texts(typed([f"dataset.path={data}"])))
    assert texts == [TrainingText(f"{data}:1", f"{EN['near'].question}\n\nThiamine")]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Para one.\n\nPara two.\n", encoding="utf-8")
    pretrain = typed(["task=pretrain", "dataset=medical_text", f"dataset.path={corpus}", "adapter=full"])
    assert [t.source for t in run_training_texts(pretrain)] == [f"{corpus / 'a.txt'}:1", f"{corpus / 'a.txt'}:3"]


def test_summary_warning_and_accuracy_by_contamination(tmp_path):
    files, _ = english_training(tmp_path)
    report = audit_contamination(list(EN.values()), training_texts(files))
    summary = report.summary()
    assert summary["by_flag"] == {"clean": 2, "exact": 3, "ngram": 1, "near_duplicate": 1}
    assert summary["contaminated"] == 5 and summary["contaminated_fraction"] == round(5 / 7, 4) and summary["warn"]
    message = report.warning("usmle")
    assert message.startswith("CONTAMINATION: 5 of the 7 questions of exam=usmle (71.4%")
    assert f"the first, en-verbatim, in {files[0]}:3" in message
    quiet = audit_contamination(list(EN.values()), training_texts(files), ContaminationConfig(warn_fraction=0.8))
    assert quiet.warning("usmle") is None and not quiet.summary()["warn"]
    row = report.by_id()["en-near"].as_dict()
    assert row["contamination"] == "near_duplicate" and row["closest_training_record"]["source"] == f"{files[0]}:6"
    statuses = {q.qid: "correct" if i % 2 == 0 else "wrong" for i, q in enumerate(EN.values())}
    split = accuracy_by_contamination(report, statuses)
    counts = {name: {k: group[k] for k in ("n", "correct", "accuracy")} for name, group in split.items()}
    assert counts["all"] == {"n": 7, "correct": 4, "accuracy": 4 / 7}
    # contaminated: verbatim (correct), respaced (wrong), reordered (correct), partial (wrong), near (correct)
    assert counts["contaminated"] == {"n": 5, "correct": 3, "accuracy": 0.6}
    assert counts["clean"] == {"n": 2, "correct": 1, "accuracy": 0.5}
    # Wilson 95% for 3 of 5, by hand: (0.6 + 1.9208/5 -+ 1.96 sqrt(0.048 + 0.038416)) / 1.76832
    interval = split["contaminated"]["accuracy_interval"]
    assert interval["low"] == pytest.approx(0.2307, abs=1e-4) and interval["high"] == pytest.approx(0.8824, abs=1e-4)
    with pytest.raises(ValueError, match="'other'"):
        accuracy_by_contamination(report, {"other": "correct"})


def test_settings_out_of_range_are_refused_together():
    with pytest.raises(ConfigError) as refused:
        ExamIndex([], ContaminationConfig(ngram_words=0, similarity_threshold=0.9 * 200))
    assert "contamination.ngram_words=0" in str(refused.value) and "similarity_threshold=180.0" in str(refused.value)


def test_an_exam_audited_against_its_own_file_is_exact_everywhere(shared_data):
    from medtune.exam.igakuqa import select_igakuqa
    from medtune.exam.selection import ExamFilter

    root = shared_data / "data" / "igakuqa"
    everything = ExamFilter(text_only=False, min_answers=0, max_answers=99, require_choices=False, blocks=["A"])
    questions = select_igakuqa(root, [2018], everything, needs_choice_text=False).questions
    report = audit_contamination(questions, training_texts([root / "2018" / "112-A.jsonl"]))
    assert len(report.results) == len(questions) > 50
    assert all(r.flag == Flag.exact and r.closest.source == q.source for r, q in zip(report.results, questions))


def test_speed_benchmark_smoke_mode(tmp_path):
    out = tmp_path / "speed.md"
    result = subprocess.run(
        [sys.executable, "benchmarks/contamination_speed/run.py", "--smoke", f"--out={out}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = out.read_text(encoding="utf-8")
    assert "| exact | 3 | exact 3 |" in report and "| ngram | 3 | ngram 3 |" in report
    assert "Questions not planted but flagged: 0 of 51." in report


@pytest.mark.parametrize("offset", range(8))
def test_a_shared_span_of_exactly_n_units_is_found_at_any_position(offset):
    """Texts are probed at every 4th position only; a span of exactly 13 words or 20 characters shared
    with a question is still found wherever it starts in the text (and one unit shorter is not)."""
    stem_en = " ".join(f"w{i}" for i in range(30))
    stem_ja = "".join(chr(0x4E00 + i) for i in range(40))  # 40 distinct Han characters
    questions = [question("en", stem_en, ["x", "y"]), question("ja", stem_ja, ["甲", "乙"])]
    filler_en, filler_ja = " ".join(f"f{i}" for i in range(offset)), "ぬ" * offset
    span_en, span_ja = " ".join(f"w{i}" for i in range(5, 18)), stem_ja[7:27]
    texts = [
        TrainingText("en.txt:1", f"{filler_en} {span_en} tail words"),
        TrainingText("ja.txt:1", f"{filler_ja}{span_ja}ぬぬ"),
        TrainingText("short.txt:1", f"{filler_en} {' '.join(span_en.split()[:12])} | {filler_ja}{span_ja[:19]}"),
    ]
    report = audit_contamination(questions, texts).by_id()
    assert (report["en"].flag, report["en"].ngram_matches, report["en"].closest.source) == (Flag.ngram, 1, "en.txt:1")
    assert (report["ja"].flag, report["ja"].ngram_matches, report["ja"].closest.source) == (Flag.ngram, 1, "ja.txt:1")
    only_short = audit_contamination(questions, texts[2:]).by_id()
    assert only_short["en"].ngram_matches == 0 and only_short["ja"].ngram_matches == 0
