"""Word lists for the synthetic city's names (people, places, roads).

All names are made up from common characters; any likeness to a real place or person is chance.
Surname weights follow the rough order of frequency of the most common Chinese surnames.
"""

from __future__ import annotations

import numpy as np

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
    "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
# Zipf-like weights: the first surnames are far more common than the last ones.
SURNAME_WEIGHTS = 1.0 / np.arange(1, len(SURNAMES) + 1) ** 0.9

GIVEN_MALE = "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林欣浩然子轩博文志国建新海峰松柏"
GIVEN_FEMALE = "芳娜敏静丽艳娟霞秀英华玲红梅琳燕萍雪婷颖慧莉倩洁璐佳欣怡彤悦晨雨萱涵琪桂兰凤秀珍淑"

COMMUNITY_WORDS = (
    "翠湖",
    "和平",
    "安居",
    "春晖",
    "桂园",
    "银杏",
    "梧桐",
    "锦绣",
    "阳光",
    "金桥",
    "望湖",
    "清溪",
    "康乐",
    "丰乐",
    "南园",
    "北苑",
    "东城",
    "西园",
    "滨河",
    "新华",
    "长青",
    "明珠",
    "龙泉",
    "芙蓉",
    "玉兰",
    "海棠",
    "紫荆",
    "青松",
    "福寿",
    "永安",
    "同心",
    "启明",
)
STREET_NUMERALS = "一二三四五六七八九十"

COMPOUND_HEADS_OLD = (
    "幸福",
    "和谐",
    "安康",
    "富康",
    "红枫",
    "朝阳",
    "建工",
    "机械厂",
    "纺织厂",
    "电力",
    "邮电",
    "粮机",
    "水利",
    "教工",
    "化工",
    "铁路",
    "医药",
    "建材",
    "农机",
    "供销",
    "商校",
    "卫校",
    "棉麻",
    "木材",
    "一建",
    "二建",
    "自来水",
    "煤建",
    "交通",
    "气象",
    "税务",
    "工商",
    "光明",
    "团结",
    "红星",
    "东方红",
    "前进",
    "胜利",
)
COMPOUND_HEADS_NEW = (
    "华苑",
    "绿洲",
    "碧水",
    "蓝天",
    "晨光",
    "金色",
    "水岸",
    "紫云",
    "翠竹",
    "丹桂",
    "香樟",
    "百合",
    "兰亭",
    "松涛",
    "荷塘",
    "月湖",
    "星河",
    "景泰",
    "瑞祥",
    "嘉禾",
    "天润",
    "恒信",
    "盛世",
    "锦江",
    "宝安",
    "云栖",
    "湖畔",
    "御景",
    "悦府",
    "澜庭",
    "观澜",
    "枫林",
    "溪岸",
    "滨江",
    "中央",
)
COMPOUND_TAILS_OLD = ("小区", "新村", "宿舍", "里", "大院")
COMPOUND_TAILS_NEW = ("花园", "家园", "雅苑", "名邸", "华府", "公馆", "壹号")

ARTERIAL_EW = ("和平路", "建设路", "人民路", "胜利路", "解放路", "青年路", "团结路", "光明路")
ARTERIAL_NS = ("东风大道", "红星大道", "长青大道", "繁华大道", "振兴大道", "科技大道", "育才大道", "文明大道")
LOCAL_WORDS = (
    "杏花",
    "樱花",
    "槐树",
    "柳荫",
    "竹林",
    "桃园",
    "石榴",
    "枣林",
    "菊香",
    "梨花",
    "棠梨",
    "葵花",
    "芦花",
    "荷香",
    "稻香",
    "麦浪",
    "书香",
    "琴台",
    "棋盘",
    "茶亭",
    "酒坊",
    "染坊",
    "铁匠",
    "磨坊",
)
LOCAL_TAILS = ("街", "巷", "路")

MOBILE_PREFIXES = (
    "130",
    "131",
    "132",
    "133",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "153",
    "155",
    "156",
    "157",
    "158",
    "159",
    "166",
    "173",
    "176",
    "177",
    "180",
    "181",
    "182",
    "183",
    "185",
    "186",
    "187",
    "188",
    "189",
    "191",
    "198",
    "199",
)


def pick_chars(rng: np.random.Generator, pool: str, n: int, p: np.ndarray | None = None) -> np.ndarray:
    """n characters drawn from pool (with optional weights), as a numpy unicode array."""
    chars = np.array(list(pool))
    return chars[rng.choice(len(chars), size=n, p=p)]


def cn(k: int) -> str:
    """Chinese numeral for 1..99 (一, 十一, 二十一 …)."""
    d = STREET_NUMERALS
    if k <= 10:
        return d[k - 1]
    tens, ones = divmod(k, 10)
    return ("" if tens == 1 else d[tens - 1]) + "十" + ("" if ones == 0 else d[ones - 1])
