"""Text encodings of incoming files: UTF-8, GBK/GB18030 and Big5, detected with a confidence.

* Shapefile DBF: a ``.cpg`` sidecar is honoured (and checked against the text); without one the
  string bytes of the DBF are scored (:func:`detect`). When the text reads plausibly in more than one
  encoding and the bytes do not settle it, :class:`EncodingUnsure` is raised: the file is refused with
  the candidates and a sample of how the text reads in each, and the user passes ``--encoding``.
* CSV: a BOM decides (UTF-8 as Excel writes it, UTF-16); otherwise the same scoring.

How candidates are scored. Each candidate codec decodes the text strictly (a byte sequence it cannot
decode rules it out; a multi-byte character cut off at the end of a full DBF field is tolerated). Each
decoded character is put in a class, and a candidate's score is the log-likelihood of its characters
under a simple model of real Chinese text (uniform within each class):

* characters of a small set common in Chinese place names and text (东/東, 区/區, 社, 路, 号/號 …);
* the rest of the commonest level of the encoding's own character set (GB2312 level 1: 3,755 simplified
  characters; Big5 frequently used: 5,401 traditional characters);
* its second level (GB2312 level 2; Big5 less frequent), then any other Han character;
* junk: kana, Cyrillic, box drawing, private-use characters … that a wrong decoding of Chinese produces.

Words of the trade (社区/社區, 街道, 小区/小區, 居委会 …) add to a candidate's score, and each valid UTF-8
multi-byte sequence adds the odds that legacy bytes would form it by chance. A candidate is taken when
its text holds (almost) no junk and it beats the runner-up by :data:`MARGIN` (about 400 : 1); a
single short name (``东城``) can read as sensible text in both GBK and Big5, and is then refused rather
than guessed. Detection reads at most :data:`SAMPLE_BYTES` bytes.
"""

from __future__ import annotations

import codecs
import math
import struct
import unicodedata
import zipfile
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

# Names found in .cpg files → Python codec names. GBK/CP936/GB2312 are read as GB18030 (superset).
_CPG_ALIASES = {
    "65001": "utf-8",
    "utf8": "utf-8",
    "utf-8": "utf-8",
    "936": "gb18030",
    "cp936": "gb18030",
    "gbk": "gb18030",
    "gb2312": "gb18030",
    "gb18030": "gb18030",
    "54936": "gb18030",
    "ansi 936": "gb18030",
    "950": "big5",
    "cp950": "big5",
    "big5": "big5",
    "1252": "cp1252",
    "ansi 1252": "cp1252",
    "88591": "latin-1",
    "8859_1": "latin-1",
    "iso-8859-1": "latin-1",
}

#: Candidates scored when nothing declares the encoding.
CANDIDATES = ("utf-8", "gb18030", "big5")
#: Log-odds the winner must have over the runner-up (e^6 ≈ 400 : 1).
MARGIN = 6.0
#: Bytes of text read for detection (DBF string fields, CSV text).
SAMPLE_BYTES = 256 * 1024


def normalize_codec(name: str) -> str:
    """A Python codec name for an encoding label from a .cpg file or a user option."""
    key = name.strip().lower()
    if key in _CPG_ALIASES:
        return _CPG_ALIASES[key]
    try:
        return codecs.lookup(key).name
    except LookupError:
        raise ValueError(f"未知编码 unknown encoding {name!r} (use utf-8, gbk, gb18030, big5)") from None


# --- character classes ---------------------------------------------------------------------------------

_FAMILIAR_SIMPLIFIED = (
    "的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之年过发后作里用道"
    "行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心本前开但因只从想实日月水火山石"
    "田土木金王李张刘陈杨黄赵周吴徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾肖董潘袁蔡蒋余杜叶程苏魏吕丁任沈"
    "姚卢姜崔钟谭陆汪范廖东西南北省市县区镇乡村街路巷弄坊社居委员号楼栋层室户单元花园苑府庭院城新老湖江河海港"
    "湾桥林森泉溪塘坝岭峰岗坡沟庄屯营寨堡店铺场站厂矿校医局团队广厦寓宅阁轩龙凤安康宁平兴盛福寿长春秋景华阳光"
    "明星银玉翠锦绣桃梅兰竹菊松柏柳荷莲云台观寺庙塔亭网格卫务服办处业农工商"
)
_FAMILIAR_TRADITIONAL = (
    "的一是不了在人有我他這個們中來上大為和國地到以說時要就出會可也你對生能而子那得於著下自之年過發後作裡裏用道"
    "行所然家種事成方多經麼去法學如都同現當沒動面起看定天分還進好小部其些主樣理心本前開但因只從想實日月水火山石"
    "田土木金王李張劉陳楊黃趙周吳徐孫馬朱胡郭何林高羅鄭梁謝宋唐許韓馮鄧曹彭曾蕭董潘袁蔡蔣余杜葉程蘇魏呂丁任沈"
    "姚盧姜崔鍾譚陸汪范廖東西南北省市縣區鎮鄉村街路巷弄坊社居委員號樓棟層室戶單元花園苑府庭院城新老湖江河海港"
    "灣橋林森泉溪塘壩嶺峰崗坡溝莊屯營寨堡店鋪場站廠礦校醫局團隊廣廈寓宅閣軒龍鳳安康寧平興盛福壽長春秋景華陽光"
    "明星銀玉翠錦繡桃梅蘭竹菊松柏柳荷蓮雲臺台觀寺廟塔亭網格衛務服辦處業農工商"
)
_WORDS = [
    "社区",
    "街道",
    "小区",
    "居委会",
    "村委会",
    "委员会",
    "居民",
    "花园",
    "家园",
    "新村",
    "公寓",
    "大厦",
    "广场",
    "中心",
    "单元",
    "网格",
    "办事处",
    "服务",
    "卫生",
    "学校",
    "小学",
    "中学",
    "幼儿园",
    "医院",
    "公园",
    "派出所",
    "城市",
    "农村",
    "号楼",
    "大街",
    "小巷",
    "社區",
    "小區",
    "居委會",
    "村委會",
    "委員會",
    "花園",
    "家園",
    "大廈",
    "廣場",
    "單元",
    "網格",
    "辦事處",
    "服務",
    "衛生",
    "學校",
    "小學",
    "中學",
    "幼兒園",
    "醫院",
    "公園",
    "農村",
    "號樓",
]
_WORD_BONUS = 4.0
_WORD_BONUS_CAP = 40.0
# log(1/p), p: the chance that legacy (GBK/Big5) bytes form a valid UTF-8 sequence of that length
_UTF8_SEQ_BONUS = {2: 2.5, 3: 4.2, 4: 6.0}

# (probability of the class among the text's characters, number of characters in the class)
_MODEL = {
    "gb18030": {"familiar": (0.30, 330), "common": (0.60, 3425), "second": (0.07, 3008), "other": (0.025, 14139)},
    "big5": {"familiar": (0.30, 330), "common": (0.63, 5071), "second": (0.06, 7662), "other": (0.01, 1000)},
    "utf-8": {"familiar": (0.30, 600), "common": (0.55, 7500), "second": (0.1, 20000), "latin": (0.04, 400)},
}
_JUNK = (0.005, 3000)
_CLASS_LL = {
    codec: {k: math.log(p / n) for k, (p, n) in classes.items()} | {"junk": math.log(_JUNK[0] / _JUNK[1])}
    for codec, classes in _MODEL.items()
}
_FAMILIAR = {
    "gb18030": frozenset(_FAMILIAR_SIMPLIFIED),
    "big5": frozenset(_FAMILIAR_TRADITIONAL),
    "utf-8": frozenset(_FAMILIAR_SIMPLIFIED + _FAMILIAR_TRADITIONAL),
}


def _is_han(ch: str) -> bool:
    o = ord(ch)
    return 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0x20000 <= o <= 0x3134F or 0xF900 <= o <= 0xFAFF


def _is_neutral(ch: str) -> bool:
    """ASCII, punctuation and full-width forms: they say nothing about the encoding."""
    o = ord(ch)
    if o < 0x80 or 0x3000 <= o <= 0x303F or 0xFF01 <= o <= 0xFF5E or 0x2010 <= o <= 0x2027 or o in (0xB7, 0x2116):
        return True
    return ch.isspace()


@lru_cache(maxsize=65536)
def _char_class(ch: str, codec: str) -> str | None:
    """The class of one decoded character under ``codec`` (None: neutral)."""
    if _is_neutral(ch):
        return None
    if _is_han(ch):
        if ch in _FAMILIAR[codec]:
            return "familiar"
        if codec == "gb18030":
            try:
                lead = ch.encode("gb2312")[0]
            except UnicodeEncodeError:
                return "other"
            return "common" if 0xB0 <= lead <= 0xD7 else "second"
        if codec == "big5":
            try:
                b = ch.encode("big5")
            except UnicodeEncodeError:
                return "other"
            if b"\xa4\x40" <= b <= b"\xc6\x7e":
                return "common"
            return "second" if b >= b"\xc9\x40" else "other"
        try:
            ch.encode("gb2312")
            return "common"
        except UnicodeEncodeError:
            pass
        try:
            b = ch.encode("big5")
            return "common" if b"\xa4\x40" <= b <= b"\xc6\x7e" else "second"
        except UnicodeEncodeError:
            return "second"
    if codec == "utf-8" and unicodedata.category(ch).startswith("L") and ord(ch) < 0x250:
        return "latin"  # é, ü, ł … in European names
    return "junk"


@dataclass
class Candidate:
    """How one codec reads the text."""

    codec: str
    decodes: bool
    score: float = -math.inf
    chars: int = 0  # characters that count (neither ASCII nor punctuation)
    junk: int = 0
    words: int = 0
    sample: str = ""

    @property
    def plausible(self) -> bool:
        return self.decodes and self.chars > 0 and self.junk <= 0.02 * self.chars


@dataclass
class Detection:
    """The outcome of :func:`detect`: the codec (None when unsure) and every candidate's reading."""

    codec: str | None
    candidates: list[Candidate] = field(default_factory=list)
    reason: str = ""

    @property
    def confident(self) -> bool:
        return self.codec is not None


def _decode(chunk: bytes, codec: str, full: bool) -> str:
    try:
        return chunk.decode(codec)
    except UnicodeDecodeError as exc:
        # a multi-byte character cut at the end of a full fixed-width field (the writer truncated it)
        if full and exc.start >= len(chunk) - 3 and exc.end == len(chunk):
            return chunk[: exc.start].decode(codec)
        raise


def _score(chunks: list[tuple[bytes, bool]], codec: str) -> Candidate:
    cand = Candidate(codec, decodes=True, score=0.0)
    lls = _CLASS_LL[codec]
    texts: list[str] = []
    try:
        texts = [_decode(c, codec, full) for c, full in chunks]
    except UnicodeDecodeError:
        return Candidate(codec, decodes=False)
    shown: list[str] = []
    for t in texts:
        for ch in t:
            k = _char_class(ch, codec)
            if k is None:
                continue
            cand.chars += 1
            cand.junk += k == "junk"
            cand.score += lls[k]
        if codec == "utf-8":
            cand.score += sum(_UTF8_SEQ_BONUS[len(ch.encode())] for ch in t if ord(ch) >= 0x80)
        if len(shown) < 3 and any(ord(ch) >= 0x80 for ch in t) and t not in shown:
            shown.append(t[:24])
    cand.words = sum(t.count(w) for t in texts for w in _WORDS)
    cand.score += min(_WORD_BONUS * cand.words, _WORD_BONUS_CAP)
    cand.sample = " / ".join(shown)
    return cand


def detect(chunks: list[bytes] | list[tuple[bytes, bool]], candidates: tuple[str, ...] = CANDIDATES) -> Detection:
    """Score ``candidates`` over the text ``chunks`` (DBF field values or lines; ``(bytes, full)`` pairs
    where ``full`` says the value filled its fixed-width field and may end in a cut-off character)."""
    pairs = [(c, False) if isinstance(c, bytes) else c for c in chunks]
    pairs = [(c, f) for c, f in pairs if c]
    total, kept = 0, []
    for c, f in pairs:
        if total >= SAMPLE_BYTES:
            break
        kept.append((c, f))
        total += len(c)
    if not any(max(c) >= 0x80 for c, _ in kept):
        return Detection("utf-8", [], "ASCII only")
    cands = sorted((_score(kept, codec) for codec in candidates), key=lambda c: c.score, reverse=True)
    good = [c for c in cands if c.decodes]
    if not good:
        return Detection(None, cands, "no candidate decodes the text")
    best = good[0]
    if not best.plausible:
        return Detection(None, cands, f"the best reading ({best.codec}) holds characters Chinese text does not")
    rival = next((c for c in good[1:] if c.plausible), None)  # a reading with kana, box drawing … is out
    if rival is not None and best.score - rival.score < MARGIN:
        return Detection(None, cands, f"{best.codec} and {rival.codec} both read as plausible text")
    if rival is None and best.chars < 2 and not best.words:
        return Detection(None, cands, "too little text to tell")
    return Detection(best.codec, cands, "detected")


class EncodingUnsure(ValueError):
    """The text's encoding cannot be told with confidence: the user must name it (``--encoding``)."""

    rule = "encoding_unsure"

    def __init__(self, what: str, detection: Detection) -> None:
        self.detection = detection
        readings = "; ".join(
            f"{c.codec}: «{c.sample}»" if c.decodes else f"{c.codec}: does not decode" for c in detection.candidates
        )
        options = "|".join(dict.fromkeys(_OPTION.get(c.codec, c.codec) for c in detection.candidates if c.decodes))
        super().__init__(
            f"无法确定文字编码，请指定 the text encoding of {what} cannot be told with confidence "
            f"({detection.reason}) (rule: encoding_unsure); it reads as — {readings}; pass --encoding "
            f"{options or 'gbk|big5|utf-8'} (cp1252 for European text), or put the encoding name in a .cpg file"
        )


_OPTION = {"gb18030": "gbk", "utf-8": "utf-8", "big5": "big5"}


def sniff_bytes(chunks: list[bytes]) -> str:
    """The detected codec of ``chunks``, or the best-scoring decodable one when unsure (for messages)."""
    d = detect(chunks)
    if d.codec:
        return d.codec
    return next((c.codec for c in d.candidates if c.decodes), "utf-8")


def text_encoding(data: bytes) -> str:
    """Encoding of a text file's bytes (CSV): ``utf-8-sig`` / ``utf-16`` by their BOM, else detected;
    raises :class:`EncodingUnsure` when the text does not settle it."""
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    head = data[:SAMPLE_BYTES]
    if len(data) > SAMPLE_BYTES and b"\n" in head:
        head = head[: head.rindex(b"\n")]  # never a byte of a multi-byte character in GBK/Big5/UTF-8
    d = detect([line for line in head.split(b"\n") if line])
    if d.codec is None:
        raise EncodingUnsure("the file", d)
    return d.codec


def _dbf_text_fields(dbf: Path | BinaryIO | IO[bytes], max_records: int = 2000) -> list[tuple[bytes, bool]]:
    """(value, fills its field) of the string fields of the first records; ``dbf`` is a path or a
    seekable binary file (e.g. a member of a zip, read in place)."""
    with dbf.open("rb") if isinstance(dbf, Path) else nullcontext(dbf) as f:
        head = f.read(32)
        if len(head) < 32:
            return []
        n_rec, header_len, rec_len = struct.unpack("<IHH", head[4:12])
        fields = []
        offset = 1  # deletion flag
        while f.tell() < header_len - 1:
            d = f.read(32)
            if not d or d[0] == 0x0D or len(d) < 32:
                break
            ftype, flen = chr(d[11]), d[16]
            if ftype in "CM":
                fields.append((offset, flen))
            offset += flen
        if not fields:
            return []
        f.seek(header_len)  # zip members (read in place) are seekable too
        out = []
        total = 0
        for _ in range(min(n_rec, max_records)):
            rec = f.read(rec_len)
            if len(rec) < rec_len or total > SAMPLE_BYTES:
                break
            for o, n in fields:
                v = rec[o : o + n].rstrip(b" \x00")
                if v:
                    out.append((v, len(v) == n))
                    total += len(v)
        return out


def _dbf_string_bytes(dbf: Path | BinaryIO | IO[bytes], max_records: int = 2000) -> list[bytes]:
    """String field bytes of the first records."""
    return [v for v, _ in _dbf_text_fields(dbf, max_records)]


class EncodingMismatch(ValueError):
    """The ``.cpg`` names an encoding the DBF's text is not written in."""

    rule = "cpg_mismatch"


def check_cpg(label: str, codec: str, chunks: list[bytes] | list[tuple[bytes, bool]]) -> None:
    """Raise :class:`EncodingMismatch` when the DBF text contradicts its ``.cpg``: not decodable in the
    named encoding, or named GBK/GB18030 while every string is valid UTF-8 with Chinese in it (read as
    GBK it would silently become mojibake)."""
    pairs = [(c, False) if isinstance(c, bytes) else c for c in chunks]
    if not pairs:
        return
    try:
        for c, full in pairs:
            _decode(c, codec, full)
    except (UnicodeDecodeError, LookupError):
        d = detect(pairs)
        other = d.codec or "?"
        way_out = f"pass --encoding {_OPTION.get(other, other)}" if d.codec else "pass --encoding gbk|big5|utf-8"
        raise EncodingMismatch(
            f".cpg 声明的编码与属性表不符 the .cpg file says {label!r} but the DBF text is not {codec} "
            f"(it reads as {other}); fix the .cpg or {way_out} (rule: cpg_mismatch)"
        ) from None
    if codec == "gb18030" and any(max(c) >= 0x80 for c, _ in pairs) and detect(pairs).codec == "utf-8":
        raise EncodingMismatch(
            f".cpg 声明的编码与属性表不符 the .cpg file says {label!r} but the DBF text is UTF-8; "
            "fix the .cpg or pass --encoding utf-8 (rule: cpg_mismatch)"
        )


def _detected(what: str, fields: list[tuple[bytes, bool]]) -> tuple[str, str]:
    d = detect(fields)
    if d.codec is None:
        raise EncodingUnsure(what, d)
    return d.codec, "detected from the DBF bytes (no .cpg)"


def shapefile_encoding(shp: str | Path) -> tuple[str, str]:
    """(codec, how) for a Shapefile's DBF: from its ``.cpg`` (checked against the DBF's text, raising
    :class:`EncodingMismatch` when it lies) or detected from the bytes (raising :class:`EncodingUnsure`
    when the bytes do not settle it)."""
    shp = Path(shp)
    dbf = next((p for p in (shp.with_suffix(".dbf"), shp.with_suffix(".DBF")) if p.exists()), None)
    for ext in (".cpg", ".CPG"):
        cpg = shp.with_suffix(ext)
        if cpg.exists():
            label = cpg.read_bytes().decode("ascii", "replace").strip()
            if label:
                codec = normalize_codec(label)
                if dbf is not None:
                    check_cpg(label, codec, _dbf_text_fields(dbf))
                return codec, f".cpg says {label}"
    if dbf is None:
        return "utf-8", "no .dbf"
    fields = _dbf_text_fields(dbf)
    if not fields:
        return "utf-8", "no text fields"
    return _detected(f"{dbf.name} (no .cpg)", fields)


def zip_shapefile_encoding(z: zipfile.ZipFile, shp_member: str) -> tuple[str, str]:
    """:func:`shapefile_encoding` for a Shapefile inside a zip, read in place (nothing extracted)."""
    stem = str(PurePosixPath(shp_member).with_suffix(""))
    names = {n.lower(): n for n in z.namelist()}
    cpg = names.get(stem.lower() + ".cpg")
    if cpg is not None:
        with z.open(cpg) as f:
            label = f.read(64).decode("ascii", "replace").strip()
        if label:
            codec = normalize_codec(label)
            dbf_member = names.get(stem.lower() + ".dbf")
            if dbf_member is not None:
                with z.open(dbf_member) as f:
                    check_cpg(label, codec, _dbf_text_fields(f))
            return codec, f".cpg says {label}"
    dbf = names.get(stem.lower() + ".dbf")
    if dbf is None:
        return "utf-8", "no .dbf"
    with z.open(dbf) as f:
        fields = _dbf_text_fields(f)
    if not fields:
        return "utf-8", "no text fields"
    return _detected(f"{PurePosixPath(dbf).name} (no .cpg)", fields)
