// Chinese by default, English on request; the choice is kept in localStorage.
const STRINGS = {
  zh: {
    title: "地质灾害预警值班台",
    "live.on": "实时", "live.off": "未连接",
    logout: "退出",
    "login.title": "登录", "login.user": "用户名", "login.password": "密码",
    "login.submit": "登录", "login.failed": "登录失败", "login.ended": "会话已结束，请重新登录",
    "nav.duty": "值班", "nav.devices": "设备", "nav.monitor": "我的隐患点",
    "queue.title": "预警队列", "queue.empty": "没有未处理的预警", drill: "【演练】",
    "map.title": "隐患点分布", "map.empty": "辖区内没有隐患点",
    "map.devices": "设备", "map.legend": "图例",
    "level.none": "无", "level.blue": "蓝色", "level.yellow": "黄色",
    "level.orange": "橙色", "level.red": "红色",
    "status.open": "未确认", "status.acknowledged": "已确认", "status.resolved": "已解除",
    "kind.rainfall": "降雨", "kind.deformation": "变形", "kind.water_level": "水位",
    "kind.pollution": "水质", "kind.combined": "综合", "kind.data_quality": "数据质量",
    "kind.silence": "设备静默",
    "detail.title": "预警详情", "detail.close": "关闭", "detail.none": "请在队列或地图上选择预警",
    "detail.opened": "发布", "detail.data": "最新数据", "detail.ack": "确认", "detail.resolve": "解除",
    "detail.ack_note": "备注（可选）", "detail.reason": "解除原因（必填）",
    "detail.reason_missing": "请填写解除原因",
    "detail.acked_by": "确认人", "detail.resolved_by": "解除人",
    "detail.evidence": "证据", "detail.history": "等级变化", "detail.audit": "操作记录",
    "detail.households": "受威胁住户", "detail.shelters": "避险场所", "detail.monitors": "监测员",
    "detail.responsible": "责任人",
    "detail.notifications": "已发通知", "detail.no_notifications": "无通知记录",
    "detail.no_notify_api": "无（本服务器未提供通知接口）",
    "detail.members": "人", "detail.free": "空位", "detail.distance": "距离",
    "detail.no_households": "无住户记录", "detail.no_shelters": "无避险场所",
    "detail.threatened": "受威胁", "detail.people": "人", "detail.households_n": "户",
    "chart.displacement": "位移", "chart.velocity": "速率（毫米/天）", "chart.engine_band": "预警引擎计算，阴影为95%区间",
    "chart.forecast": "预报破坏时间", "chart.band": "预报区间",
    "chart.rain": "每小时降雨（毫米）", "chart.accum": "累计雨量与阈值（毫米）",
    "chart.level": "水位（米）", "chart.value": "数值",
    "chart.warning": "警戒水位", "chart.guaranteed": "保证水位", "chart.historical_max": "历史最高",
    "chart.no_data": "此时段无数据",
    "devices.title": "设备健康", "devices.empty": "没有设备",
    "devices.id": "设备", "devices.kind": "类型", "devices.state": "状态",
    "devices.battery": "电量", "devices.last": "最后数据", "devices.problems": "问题",
    "devices.deadletters": "被拒消息（7天）",
    "health.ok": "正常", "health.late": "迟报", "health.silent": "静默",
    "health.offline": "离线", "health.unknown": "未知",
    "monitor.title": "我的隐患点", "monitor.empty": "没有分配给您的隐患点",
    "monitor.confirm": "我已收到预警", "monitor.confirmed": "已确认收到",
    "monitor.report": "提交巡查报告", "monitor.kind": "现象", "monitor.severity": "严重程度",
    "monitor.note": "说明", "monitor.photo": "照片（可选）", "monitor.submit": "提交",
    "monitor.sent": "报告已提交", "monitor.no_alert": "当前无预警",
    "report.new_cracks": "新裂缝", "report.cracks_widening": "裂缝扩大", "report.bulging": "鼓胀",
    "report.seepage": "渗水", "report.turbid_water": "水体浑浊",
    "report.falling_rocks": "落石", "report.tilted_trees_or_poles": "树木电杆倾斜",
    "report.unusual_sounds": "异常声响", "report.other": "其他",
    "severity.minor": "轻微", "severity.moderate": "中等", "severity.severe": "严重",
    "notify.at": "时间", "notify.channel": "渠道", "notify.to": "接收人", "notify.purpose": "用途", "notify.state": "状态",
    "channel.sms": "短信", "channel.voice": "语音", "channel.push": "推送", "channel.webhook": "工作群", "channel.file": "文件",
    "purpose.warning": "预警", "purpose.escalation": "逐级上报", "purpose.update": "更新",
    "purpose.all_clear": "解除", "purpose.unplaced": "安置不足", "purpose.test": "测试",
    "state.pending": "待发", "state.sending": "发送中", "state.queued": "排队", "state.sent": "已发",
    "state.delivered": "已送达", "state.undelivered": "未送达", "state.failed": "失败", "state.rejected": "被拒",
    "state.expired": "过期", "state.uncertain": "不确定",
    "action.opened": "发布", "action.raised": "升级", "action.lowered": "降级", "action.cleared": "数据恢复正常",
    "action.resolved": "解除", "action.acknowledged": "确认", "action.commented": "备注", "action.received": "已收到",
    "action.updated": "更新",
    "banner.new": "新预警", "error": "出错", "ago": "前",
  },
  en: {
    title: "Geohazard warning duty console",
    "live.on": "live", "live.off": "offline",
    logout: "Log out",
    "login.title": "Log in", "login.user": "User name", "login.password": "Password",
    "login.submit": "Log in", "login.failed": "Login failed", "login.ended": "Session ended, log in again",
    "nav.duty": "Duty", "nav.devices": "Devices", "nav.monitor": "My hazard points",
    "queue.title": "Alert queue", "queue.empty": "No unresolved alerts", drill: "【演练】DRILL",
    "map.title": "Hazard points", "map.empty": "No hazard points in your counties",
    "map.devices": "devices", "map.legend": "Legend",
    "level.none": "none", "level.blue": "blue", "level.yellow": "yellow",
    "level.orange": "orange", "level.red": "red",
    "status.open": "open", "status.acknowledged": "acknowledged", "status.resolved": "resolved",
    "kind.rainfall": "rainfall", "kind.deformation": "deformation", "kind.water_level": "water level",
    "kind.pollution": "water quality", "kind.combined": "combined", "kind.data_quality": "data quality",
    "kind.silence": "silent device",
    "detail.title": "Alert", "detail.close": "Close", "detail.none": "Pick an alert in the queue or on the map",
    "detail.opened": "opened", "detail.data": "latest data", "detail.ack": "Acknowledge",
    "detail.resolve": "Resolve", "detail.ack_note": "note (optional)",
    "detail.reason": "reason (required)", "detail.reason_missing": "give a reason",
    "detail.acked_by": "acknowledged by", "detail.resolved_by": "resolved by",
    "detail.evidence": "Evidence", "detail.history": "Level history", "detail.audit": "Audit trail",
    "detail.households": "Households at risk", "detail.shelters": "Shelters", "detail.monitors": "Monitors",
    "detail.responsible": "Responsible",
    "detail.notifications": "Notifications sent", "detail.no_notifications": "none sent",
    "detail.no_notify_api": "none (this server has no notifications endpoint)",
    "detail.members": "people", "detail.free": "free", "detail.distance": "distance",
    "detail.no_households": "no households recorded", "detail.no_shelters": "no shelters",
    "detail.threatened": "threatened", "detail.people": "people", "detail.households_n": "households",
    "chart.displacement": "Displacement", "chart.velocity": "Velocity (mm/day)", "chart.engine_band": "as the engine computes it, shaded: 95 % interval",
    "chart.forecast": "forecast failure", "chart.band": "forecast band",
    "chart.rain": "Hourly rain (mm)", "chart.accum": "Accumulations against thresholds (mm)",
    "chart.level": "Water level (m)", "chart.value": "Value",
    "chart.warning": "warning", "chart.guaranteed": "guaranteed", "chart.historical_max": "historical max",
    "chart.no_data": "no data in this period",
    "devices.title": "Device health", "devices.empty": "No devices",
    "devices.id": "Device", "devices.kind": "Kind", "devices.state": "State",
    "devices.battery": "Battery", "devices.last": "Last reading", "devices.problems": "Problems",
    "devices.deadletters": "Dead letters (7 d)",
    "health.ok": "ok", "health.late": "late", "health.silent": "silent",
    "health.offline": "offline", "health.unknown": "unknown",
    "monitor.title": "My hazard points", "monitor.empty": "No hazard points assigned to you",
    "monitor.confirm": "I received the warning", "monitor.confirmed": "receipt confirmed",
    "monitor.report": "Field report", "monitor.kind": "What you see", "monitor.severity": "Severity",
    "monitor.note": "Note", "monitor.photo": "Photo (optional)", "monitor.submit": "Send",
    "monitor.sent": "Report sent", "monitor.no_alert": "no warning now",
    "report.new_cracks": "new cracks", "report.cracks_widening": "cracks widening",
    "report.bulging": "bulging", "report.seepage": "seepage", "report.turbid_water": "turbid water",
    "report.falling_rocks": "falling rocks", "report.tilted_trees_or_poles": "tilted trees or poles",
    "report.unusual_sounds": "unusual sounds", "report.other": "other",
    "severity.minor": "minor", "severity.moderate": "moderate", "severity.severe": "severe",
    "notify.at": "When", "notify.channel": "Channel", "notify.to": "To", "notify.purpose": "For", "notify.state": "State",
    "channel.sms": "SMS", "channel.voice": "voice", "channel.push": "push", "channel.webhook": "webhook", "channel.file": "file",
    "purpose.warning": "warning", "purpose.escalation": "escalation", "purpose.update": "update",
    "purpose.all_clear": "all clear", "purpose.unplaced": "shelter shortfall", "purpose.test": "test",
    "state.pending": "pending", "state.sending": "sending", "state.queued": "queued", "state.sent": "sent",
    "state.delivered": "delivered", "state.undelivered": "undelivered", "state.failed": "failed", "state.rejected": "rejected",
    "state.expired": "expired", "state.uncertain": "uncertain",
    "action.opened": "opened", "action.raised": "raised", "action.lowered": "lowered", "action.cleared": "cleared",
    "action.resolved": "resolved", "action.acknowledged": "acknowledged", "action.commented": "comment", "action.received": "received",
    "action.updated": "updated",
    "banner.new": "New alert", "error": "Error", "ago": "ago",
  },
};

let lang = localStorage.getItem("geowarn.lang") === "en" ? "en" : "zh";

// A value with no translation (a new alert kind, a new delivery state) shows as itself.
// The warning-notification switch (push.js), per state: [zh label, zh why, en label, en why].
const PUSH = {
  unsupported: ["预警通知：本设备不支持", "此浏览器不支持推送通知（或已禁用后台服务）",
    "Warnings on this device: not supported", "this browser cannot receive push notifications (or service workers are off)"],
  denied: ["预警通知：浏览器已阻止", "浏览器拒绝了本站的通知权限；请在浏览器的网站设置中允许通知",
    "Warnings on this device: blocked", "the browser refused notifications for this site; allow them in its site settings"],
  unavailable: ["预警通知：服务器未开启", "服务器未配置网页推送（GEOWARN_NOTIFY_VAPID_KEY_FILE）",
    "Warnings on this device: not set up on the server", "the server has no Web Push key (GEOWARN_NOTIFY_VAPID_KEY_FILE)"],
  unlinked: ["预警通知：账号未关联人员", "您的账号未关联人员名录，无人可推送（geowarn users add --person）",
    "Warnings on this device: account not linked", "your user is not linked to a person of the directory (geowarn users add --person)"],
  off: ["预警通知：未开启", "点击后本设备将收到您的预警通知",
    "Warnings on this device: off", "click to receive your warnings on this device"],
  on: ["预警通知：已开启", "本设备正在接收您的预警通知；点击关闭",
    "Warnings on this device: on", "this device receives your warnings; click to stop"],
  busy: ["预警通知：处理中…", "", "Warnings on this device: …", ""],
};
for (const [state, [zh, zhWhy, en, enWhy]] of Object.entries(PUSH)) {
  Object.assign(STRINGS.zh, { [`push.${state}`]: zh, [`push.${state}.help`]: zhWhy });
  Object.assign(STRINGS.en, { [`push.${state}`]: en, [`push.${state}.help`]: enWhy });
}
STRINGS.zh["push.failed"] = "预警通知设置失败";
STRINGS.en["push.failed"] = "Could not change warning notifications";

export function t(key) {
  return STRINGS[lang][key] ?? STRINGS.zh[key] ?? key.slice(key.indexOf(".") + 1);
}

export function currentLang() {
  return lang;
}

export function setLang(next) {
  lang = next === "en" ? "en" : "zh";
  localStorage.setItem("geowarn.lang", lang);
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  translateStatic();
}

// Elements written in index.html carry data-i18n; the views re-render themselves.
export function translateStatic(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  document.title = lang === "zh" ? "GeoWarn 预警值班台" : "GeoWarn duty console";
  const button = document.getElementById("lang");
  if (button) button.textContent = lang === "zh" ? "English" : "中文";
}

// Times in the browser's zone (the duty room's), to the minute.
export function time(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function age(iso, now = Date.now()) {
  const s = Math.max(0, (now - new Date(iso).getTime()) / 1000);
  const [n, unit] = s < 3600 ? [Math.round(s / 60), lang === "zh" ? "分钟" : " min"]
    : s < 86400 * 2 ? [Math.round(s / 3600), lang === "zh" ? "小时" : " h"]
      : [Math.round(s / 86400), lang === "zh" ? "天" : " d"];
  return `${n}${unit}${lang === "zh" ? "前" : " ago"}`;
}
