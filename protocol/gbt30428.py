"""GB/T 30428 case classes used by citysense (see shared domain brief).

Component (部件) cases name the physical asset's class; event (事件) cases name the situation.
A code is major (2 digits) + minor (2 digits), e.g. ``0103`` 雨水井盖.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Category = Literal["component", "event"]

COMPONENT_MAJOR = {
    "01": "公用设施",
    "02": "道路交通",
    "03": "市容环境",
    "04": "园林绿化",
    "05": "房屋土地",
    "06": "其他设施",
}
EVENT_MAJOR = {
    "01": "市容环境",
    "02": "宣传广告",
    "03": "施工管理",
    "04": "突发事件",
    "05": "街面秩序",
}
COMPONENT_MINOR = {
    "0101": "上水井盖",
    "0102": "污水井盖",
    "0103": "雨水井盖",
    "0104": "雨水箅子",
    "0105": "电力井盖",
    "0106": "路灯井盖",
    "0107": "通讯井盖",
    "0108": "电视井盖",
    "0109": "网络井盖",
    "0110": "热力井盖",
    "0111": "燃气井盖",
    "0112": "公安井盖",
    "0113": "消防设施",
    "0114": "无主井盖",
    "0115": "通讯交接箱",
    "0116": "电力设施",
    "0117": "立杆/电杆",
    "0118": "路灯",
    "0119": "地灯",
}
EVENT_MINOR = {
    "0401": "路面塌陷",
    "0402": "自来水管破裂",
    "0403": "燃气管道破裂",
    "0404": "下水道堵塞或破损",
    "0405": "热力管道破裂",
    "0406": "道路积水",
    "0407": "道路积雪结冰",
    "0408": "架空线缆损坏",
    "0499": "其他",
}
COVER_CLASSES = tuple(f"01{n:02d}" for n in range(1, 15))
POLE_CLASSES = ("0117", "0118")


@dataclass(frozen=True, slots=True)
class CaseClass:
    category: Category
    code: str
    name: str
    major_name: str


def case_class(category: Category, code: str) -> CaseClass:
    """Look a class up; raises ``KeyError`` for a code citysense does not know."""
    minor = COMPONENT_MINOR if category == "component" else EVENT_MINOR
    major = COMPONENT_MAJOR if category == "component" else EVENT_MAJOR
    return CaseClass(category, code, minor[code], major[code[:2]])
