"""Error sentences in the page's language.

The API speaks English (API clients, logs and scripts match on it). The page sends its language in
`X-Vmeta-Lang` and gets the sentences it shows to people in that language. One table per language: an English
sentence pattern -> its translation; named groups carry what varies (file names, limits, seconds). A sentence
not in the table stays English, so a new error is never lost, only untranslated.
"""

from __future__ import annotations

import re
from typing import Any

LANG_HEADER = "x-vmeta-lang"

# The sentences a person meets on the chat and review pages: accounts, uploads, conversations, review decisions.
_ZH_SENTENCES: tuple[tuple[str, str], ...] = (
    (r"wrong e-mail or password\.", "邮箱或密码错误。"),
    (r"'(?P<email>.+)' is already registered; log in instead\.", "“{email}”已经注册，请直接登录。"),
    (r"too many wrong passwords for .+; wait (?P<s>\d+) s and try again\.", "密码错误次数过多，请 {s} 秒后再试。"),
    (r"registration is closed on this server; .*", "本服务器已关闭注册，请向管理员申请账号。"),
    (r"this account is disabled; ask an administrator\.", "该账号已停用，请联系管理员。"),
    (r"the current password is wrong\.", "当前密码不正确。"),
    (r"your session has ended; log in again\.", "登录已失效，请重新登录。"),
    (r"your guest session has expired; .*", "访客会话已过期，请重新开始或注册。"),
    (r"log in first \(or start a guest session\).*", "请先登录，或以访客身份开始。"),
    (r"guests cannot do this; .*", "访客不能使用此功能，注册后即可使用，对话也会保留。"),
    (r"administrators only\.", "仅限管理员。"),
    (r"missing or wrong X-[\w-]+ header; .*", "页面已过期，请刷新后重试。"),
    (r"cross-site request refused; .*", "已拒绝跨站请求，请使用本服务器提供的页面。"),
    (r"no such conversation\.", "找不到这个对话。"),
    (r"no such message\.", "找不到这条消息。"),
    (r"no upload '.*'; upload the video again\.", "找不到上传的视频，请重新上传。"),
    (r"the message is empty; .*", "消息为空，请输入内容或添加视频。"),
    (r"no model is loaded on this server\.", "服务器没有加载模型。"),
    (
        r"the (?P<what>\w+) is larger than the limit of (?P<limit>[^;]+); .*",
        "{what}超过了 {limit} 的上限，请发送更短或更小的文件。",
    ),
    (r"'(?P<f>.+)' is empty \(0 bytes\); .*", "“{f}”是空文件（0 字节），请重新选择视频文件。"),
    (r"'(?P<f>.+)' is not a video file; .*", "“{f}”不是视频文件，请上传 MP4、MOV、MKV 或 WebM 视频。"),
    (r"'(?P<f>.+)' has sound but no picture; .*", "“{f}”只有声音没有画面，请上传视频本身。"),
    (r"'(?P<f>.+)' is damaged or truncated .*", "“{f}”已损坏或不完整，无法播放；请重新导出为 H.264 MP4 后再试。"),
    (r"'(?P<f>.+)' could not be read as a video; .*", "“{f}”无法作为视频读取；请重新导出为 H.264 MP4 后再试。"),
    (
        r"'(?P<f>.+)' is (?P<d>\d+) s long; the limit is (?P<lim>\d+) s .*",
        "“{f}”时长 {d} 秒，上限为 {lim} 秒，请剪短后重试。",
    ),
    (
        r"'(?P<f>.+)' is (?P<wh>\d+x\d+); the largest frame accepted is (?P<px>[\d,]+) pixels .*",
        "“{f}”分辨率为 {wh}，单帧最多 {px} 像素，请缩小后重试。",
    ),
    # the review page (`vmeta data review`)
    (
        r"record '(?P<id>[^']+)' changed since you loaded it .*",
        "记录“{id}”在您打开之后已被修改（可能是改写任务或其他审核人），本次未保存；请重新加载后再决定。",
    ),
    (
        r"record '(?P<id>[^']+)': an edit needs the new label text; it was empty\.",
        "记录“{id}”：编辑需要填写新的标签文本。",
    ),
    (r"no record with id '(?P<id>[^']+)'.*; check the id .*", "找不到 id 为“{id}”的记录，请检查 id。"),
    (r"no record with id '(?P<id>[^']+)', so no video\.", "找不到 id 为“{id}”的记录，因此没有视频。"),
    (
        r"the video of record '(?P<id>[^']+)' \((?P<v>.+)\) is missing on disk\.",
        "记录“{id}”的视频（{v}）在磁盘上不存在。",
    ),
    # ...and the errors that arrive inside a streamed answer (`event: error`)
    (r"the video (?P<f>.+) cannot be found; upload it again\.", "找不到视频“{f}”，请重新上传。"),
    (
        r"the video (?P<f>.+) cannot be read \((?P<why>\w+)\)\.",
        "视频“{f}”无法读取（{why}），请重新导出为 H.264 MP4 后再试。",
    ),
    (r"the image (?P<f>.+) cannot be found; upload it again\.", "找不到图片“{f}”，请重新上传。"),
    (r"the image (?P<f>.+) cannot be read as a picture; .*", "图片“{f}”无法读取，请上传 PNG、JPEG 或 WebP 图片。"),
    (r"the model failed to answer \((?P<e>\w+)\); .*", "模型未能回答（{e}），请重试或换一个模型。"),
    (r"the model server is shutting down; .*", "模型服务正在关闭，请稍后再试。"),
    (r"model '(?P<m>.+)' cannot be used on this server: (?P<why>.+)\.", "模型“{m}”在本服务器上不可用：{why}。"),
    (r"model '(?P<m>.+)' could not be loaded: (?P<why>.+)\.", "模型“{m}”加载失败：{why}。"),
    (
        r"invalid request — (?:new_)?password: String should have at least (?P<n>\d+) characters\.",
        "密码至少需要 {n} 个字符。",
    ),
)
_ZH_WORDS = {"video": "视频", "avatar": "头像", "image": "图片", "picture": "图片", "upload": "上传的文件"}
_TABLES = {"zh": tuple((re.compile(p), text) for p, text in _ZH_SENTENCES)}
_WORDS = {"zh": _ZH_WORDS}


def localize(detail: str, lang: str | None) -> str:
    """`detail` in `lang` when the table has it; otherwise unchanged."""
    key = (lang or "").strip().lower()[:2]
    table = _TABLES.get(key)
    if not table:
        return detail
    words = _WORDS.get(key, {})
    for pattern, text in table:
        m = pattern.fullmatch(detail)
        if m:
            return text.format(**{k: words.get(v, v) for k, v in m.groupdict().items()})
    return detail


def localize_for(request: Any, detail: str) -> str:
    """`detail` in the language the request asks for (`X-Vmeta-Lang`), English without the header."""
    return localize(detail, request.headers.get(LANG_HEADER))


def translations(detail: str) -> dict[str, str]:
    """`detail` in every language the pages offer: a page shows an error it got earlier again in the language
    the person switches to later (the server's sentence cannot be translated back in the browser)."""
    return {"en": detail, **{lang: localize(detail, lang) for lang in _TABLES}}


def error_body(request: Any, detail: str) -> dict[str, Any]:
    """`{"detail": sentence}` in the request's language; a page's request (it sends `X-Vmeta-Lang`) also gets
    `detail_i18n`, the sentence in every language. API clients get the plain `{"detail"}` shape."""
    body: dict[str, Any] = {"detail": localize_for(request, detail)}
    if request.headers.get(LANG_HEADER):
        body["detail_i18n"] = translations(detail)
    return body
