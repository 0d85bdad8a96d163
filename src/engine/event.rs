//! Alert events as rules emit them, their JSON form (Kapacitor's alert-data field names), and the
//! data that alert templates (`id`, `message`, `details`, handler properties) render against.

use serde_json::{Map, Value as Json, json};
use std::borrow::Cow;
use std::sync::Arc;

use super::point::{Fields, Name, TagSet, Tags};
use crate::rules::format_rfc3339;
use crate::rules::lambda::Value;
use crate::rules::plan::{AlertSpec, Level};
use crate::rules::template::{self, Data, MapData};

/// One alert event: a level change, a repeat of a non-OK level, or a recovery.
#[derive(Debug, Clone)]
pub struct AlertEvent {
    /// The rule that produced it.
    pub task: Arc<str>,
    /// The alert node (`alert4`), for rules with several.
    pub node: Arc<str>,
    /// Rendered `.id()`.
    pub id: String,
    /// Rendered `.message()`.
    pub message: String,
    /// Rendered `.details()`.
    pub details: String,
    /// Event time, Unix ns.
    pub time: i64,
    /// Time since the alert left OK, ns.
    pub duration: i64,
    /// New level.
    pub level: Level,
    /// Level of the previous event of this alert.
    pub previous_level: Level,
    /// False with `.noRecoveries()`.
    pub recoverable: bool,
    /// Kapacitor group id (`host=a`), `nil` when ungrouped.
    pub group: Arc<str>,
    /// The points behind the event.
    pub data: EventData,
    /// The alert node's settings, including its handlers.
    pub spec: Arc<AlertSpec>,
}

/// The series behind an event.
#[derive(Debug, Clone)]
pub struct EventData {
    /// Measurement.
    pub name: Name,
    /// Tags.
    pub tags: Tags,
    /// (time, fields) rows.
    pub points: Vec<(i64, Fields)>,
}

impl EventData {
    /// Kapacitor's `{"series": [{"name", "tags", "columns", "values"}]}`.
    pub fn to_json(&self) -> Json {
        let mut columns: Vec<&str> = Vec::new();
        for (_, f) in &self.points {
            for (k, _) in f {
                if !columns.contains(&&**k) {
                    columns.push(k);
                }
            }
        }
        columns.sort_unstable();
        let values: Vec<Json> = self
            .points
            .iter()
            .map(|(t, f)| {
                let mut row = vec![Json::from(format_rfc3339(*t))];
                for c in &columns {
                    row.push(
                        f.iter()
                            .find(|(k, _)| &**k == *c)
                            .map_or(Json::Null, |(_, v)| v.to_json()),
                    );
                }
                Json::Array(row)
            })
            .collect();
        let mut cols = vec![Json::from("time")];
        cols.extend(columns.iter().map(|c| Json::from(*c)));
        let mut series = Map::new();
        series.insert("name".into(), Json::from(&*self.name));
        if !self.tags.0.is_empty() {
            series.insert("tags".into(), self.tags.to_json());
        }
        series.insert("columns".into(), Json::Array(cols));
        series.insert("values".into(), Json::Array(values));
        json!({ "series": [Json::Object(series)] })
    }
}

impl AlertEvent {
    /// The event in Kapacitor's alert JSON (the body of `.post()` and of `alertd test --format json`).
    pub fn to_json(&self) -> Json {
        json!({
            "id": self.id,
            "message": self.message,
            "details": self.details,
            "time": format_rfc3339(self.time),
            "duration": self.duration,
            "level": self.level.as_str(),
            "previousLevel": self.previous_level.as_str(),
            "data": self.data.to_json(),
            "recoverable": self.recoverable,
        })
    }
}

impl AlertEvent {
    /// The data templates render against for this event (handler properties).
    pub fn template_data(&self) -> TemplateData<'_> {
        TemplateData {
            id: &self.id,
            name: &self.data.name,
            task: &self.task,
            group: &self.group,
            tags: TagMap(&self.data.tags),
            level: Some(self.level),
            fields: FieldMap(self.data.points.last().map(|(_, f)| f)),
            time: self.time,
            duration: self.duration,
            message: Some(&self.message),
            details: Some(&self.details),
        }
    }
}

/// What alert templates see: `.ID .Name .TaskName .Group .Tags .Level .Fields .Time .Duration
/// .Message .Details`.
pub struct TemplateData<'a> {
    /// `.ID`
    pub id: &'a str,
    /// `.Name`
    pub name: &'a str,
    /// `.TaskName`
    pub task: &'a str,
    /// `.Group`
    pub group: &'a str,
    /// `.Tags`
    pub tags: TagMap<'a>,
    /// `.Level` (absent while rendering the id).
    pub level: Option<Level>,
    /// `.Fields`
    pub fields: FieldMap<'a>,
    /// `.Time`
    pub time: i64,
    /// `.Duration`
    pub duration: i64,
    /// `.Message` (absent while rendering the id and the message).
    pub message: Option<&'a str>,
    /// `.Details`
    pub details: Option<&'a str>,
}

/// `.Tags` as a template map (a missing tag is the empty string).
#[derive(Clone, Copy)]
pub struct TagMap<'a>(pub &'a TagSet);

impl MapData for TagMap<'_> {
    fn get(&self, key: &str) -> Option<template::Value<'_>> {
        self.0
            .get(key)
            .map(|v| template::Value::Str(Cow::Borrowed(&**v)))
    }
    fn keys(&self) -> Vec<&str> {
        self.0.0.iter().map(|(k, _)| &**k).collect()
    }
    fn zero(&self) -> template::Value<'_> {
        template::Value::Str(Cow::Borrowed(""))
    }
    fn to_json(&self) -> Json {
        self.0.to_json()
    }
}

/// `.Fields` as a template map.
#[derive(Clone, Copy)]
pub struct FieldMap<'a>(pub Option<&'a Fields>);

impl MapData for FieldMap<'_> {
    fn get(&self, key: &str) -> Option<template::Value<'_>> {
        self.0?
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| to_tvalue(v))
    }
    fn keys(&self) -> Vec<&str> {
        let mut k: Vec<&str> = self
            .0
            .map(|f| f.iter().map(|(k, _)| &**k).collect())
            .unwrap_or_default();
        k.sort_unstable();
        k
    }
    fn zero(&self) -> template::Value<'_> {
        template::Value::Nil
    }
    fn to_json(&self) -> Json {
        Json::Object(
            self.0
                .map(|f| {
                    f.iter()
                        .map(|(k, v)| (k.to_string(), v.to_json()))
                        .collect()
                })
                .unwrap_or_default(),
        )
    }
}

fn to_tvalue(v: &Value) -> template::Value<'_> {
    match v {
        Value::Float(f) => template::Value::Float(*f),
        Value::Int(i) => template::Value::Int(*i),
        Value::Str(s) => template::Value::Str(Cow::Borrowed(s)),
        Value::Bool(b) => template::Value::Bool(*b),
        Value::Duration(d) => template::Value::Duration(*d),
        Value::Time(t) => template::Value::Time(*t),
    }
}

impl Data for TemplateData<'_> {
    fn field(&self, name: &str) -> Option<template::Value<'_>> {
        use template::Value as V;
        Some(match name {
            "ID" => V::Str(Cow::Borrowed(self.id)),
            "Name" => V::Str(Cow::Borrowed(self.name)),
            "TaskName" => V::Str(Cow::Borrowed(self.task)),
            "Group" => V::Str(Cow::Borrowed(self.group)),
            "Tags" => V::Map(&self.tags),
            "Level" => V::Str(Cow::Borrowed(self.level?.as_str())),
            "Fields" => V::Map(&self.fields),
            "Time" => V::Time(self.time),
            "Duration" => V::Duration(self.duration),
            "Message" => V::Str(Cow::Borrowed(self.message?)),
            "Details" => V::Str(Cow::Borrowed(self.details?)),
            _ => return None,
        })
    }

    fn to_json(&self) -> Json {
        let mut m = Map::new();
        m.insert("Name".into(), Json::from(self.name));
        m.insert("TaskName".into(), Json::from(self.task));
        m.insert("Group".into(), Json::from(self.group));
        m.insert("Tags".into(), self.tags.0.to_json());
        m.insert("ID".into(), Json::from(self.id));
        m.insert("Fields".into(), MapData::to_json(&self.fields));
        if let Some(l) = self.level {
            m.insert("Level".into(), Json::from(l.as_str()));
        }
        m.insert("Time".into(), Json::from(format_rfc3339(self.time)));
        m.insert("Duration".into(), Json::from(self.duration));
        if let Some(msg) = self.message {
            m.insert("Message".into(), Json::from(msg));
        }
        Json::Object(m)
    }
}
