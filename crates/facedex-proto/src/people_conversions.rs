//! Conversions between the `facedex.v1.People` messages and the index's people: every request
//! bound is checked here, before the index is asked anything.

use std::time::Duration;

use facedex_index::{
    MAX_EDIT_FACES, MAX_MERGE_PEOPLE, PeopleEdit, PeoplePage, PersonAnchors, PersonFaces, PersonId, PersonSummary,
    ReclusterProgress,
};

use crate::conversions::{check_entries, face, parse_face_id};
use crate::error::RequestError;
use crate::pipeline::{PeopleEditRecord, people_edit_record};
use crate::{
    GetPersonResponse, HidePersonRequest, ListPeopleResponse, MergePeopleRequest, MoveFacesRequest, Person,
    ReclusterRequest, ReclusterResponse, RenamePersonRequest,
};

/// Persons or faces on one page when a request does not say.
pub const DEFAULT_PAGE_LIMIT: u32 = 100;
/// The most persons or faces one page holds.
pub const MAX_PAGE_LIMIT: u32 = 1_000;
/// The largest page offset: deeper pages are not what paging by offset is for.
pub const MAX_PAGE_OFFSET: u64 = 10_000_000;
/// A re-cluster call's time budget when a request does not say.
pub const DEFAULT_RECLUSTER_BUDGET_MS: u32 = 10_000;
/// The longest time budget one re-cluster call may ask for.
pub const MAX_RECLUSTER_BUDGET_MS: u32 = 600_000;

/// A checked page: where it starts and how many entries it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Entries skipped.
    pub offset: usize,
    /// Entries returned at most.
    pub limit: usize,
}

impl Page {
    /// Checks a request's `offset` and `limit` (0 means [`DEFAULT_PAGE_LIMIT`]).
    pub fn checked(offset: u64, limit: u32) -> Result<Self, RequestError> {
        if offset > MAX_PAGE_OFFSET {
            return Err(RequestError::OutOfRange {
                field: "offset",
                value: offset,
                min: 0,
                max: MAX_PAGE_OFFSET,
            });
        }
        let limit = match limit {
            0 => DEFAULT_PAGE_LIMIT,
            limit if limit > MAX_PAGE_LIMIT => {
                return Err(RequestError::OutOfRange {
                    field: "limit",
                    value: limit.into(),
                    min: 0,
                    max: MAX_PAGE_LIMIT.into(),
                });
            }
            limit => limit,
        };
        Ok(Self {
            offset: offset as usize,
            limit: limit as usize,
        })
    }
}

/// Parses a person id field.
pub fn parse_person_id(field: &'static str, text: &str) -> Result<PersonId, RequestError> {
    text.parse()
        .map_err(|source| RequestError::InvalidField { field, source })
}

/// Checks an edit's own bounds and names the field that broke one.
fn checked(edit: PeopleEdit, field: &'static str) -> Result<PeopleEdit, RequestError> {
    edit.check_bounds()
        .map_err(|source| RequestError::InvalidField { field, source })?;
    Ok(edit)
}

impl TryFrom<RenamePersonRequest> for PeopleEdit {
    type Error = RequestError;

    fn try_from(request: RenamePersonRequest) -> Result<Self, RequestError> {
        let edit = PeopleEdit::Rename {
            person: parse_person_id("person_id", &request.person_id)?,
            name: (!request.name.is_empty()).then_some(request.name),
        };
        checked(edit, "name")
    }
}

impl TryFrom<HidePersonRequest> for PeopleEdit {
    type Error = RequestError;

    fn try_from(request: HidePersonRequest) -> Result<Self, RequestError> {
        Ok(PeopleEdit::Hide {
            person: parse_person_id("person_id", &request.person_id)?,
            hidden: request.hidden,
        })
    }
}

impl TryFrom<MergePeopleRequest> for PeopleEdit {
    type Error = RequestError;

    fn try_from(request: MergePeopleRequest) -> Result<Self, RequestError> {
        check_entries("from_person_ids", &request.from_person_ids, MAX_MERGE_PEOPLE)?;
        let edit = PeopleEdit::Merge {
            into: parse_person_id("into_person_id", &request.into_person_id)?,
            from: request
                .from_person_ids
                .iter()
                .map(|id| parse_person_id("from_person_ids", id))
                .collect::<Result<_, _>>()?,
        };
        checked(edit, "from_person_ids")
    }
}

impl TryFrom<MoveFacesRequest> for PeopleEdit {
    type Error = RequestError;

    fn try_from(request: MoveFacesRequest) -> Result<Self, RequestError> {
        check_entries("face_ids", &request.face_ids, MAX_EDIT_FACES)?;
        let edit = PeopleEdit::MoveFaces {
            faces: request
                .face_ids
                .iter()
                .map(|id| parse_face_id("face_ids", id))
                .collect::<Result<_, _>>()?,
            to: match request.to_person_id.is_empty() {
                true => None,
                false => Some(parse_person_id("to_person_id", &request.to_person_id)?),
            },
        };
        checked(edit, "face_ids")
    }
}

/// A re-cluster request's checked time budget and whether it starts over.
pub fn recluster_budget(request: &ReclusterRequest) -> Result<(Duration, bool), RequestError> {
    let budget_ms = match request.budget_ms {
        0 => DEFAULT_RECLUSTER_BUDGET_MS,
        budget if budget > MAX_RECLUSTER_BUDGET_MS => {
            return Err(RequestError::OutOfRange {
                field: "budget_ms",
                value: budget.into(),
                min: 0,
                max: MAX_RECLUSTER_BUDGET_MS.into(),
            });
        }
        budget => budget,
    };
    Ok((Duration::from_millis(budget_ms.into()), request.restart))
}

/// The record of `edit` with its persons' anchors.
pub fn people_edit_record(edit: &PeopleEdit, anchors: &PersonAnchors) -> PeopleEditRecord {
    PeopleEditRecord {
        anchor_face_ids: anchors
            .iter()
            .map(|(person, face)| (person.to_string(), face.to_string()))
            .collect(),
        ..PeopleEditRecord::from(edit)
    }
}

/// The edit a record holds, and its persons' anchors.
pub fn logged_people_edit(record: PeopleEditRecord) -> Result<(PeopleEdit, PersonAnchors), RequestError> {
    let anchors = record
        .anchor_face_ids
        .iter()
        .map(|(person, face)| {
            Ok((
                parse_person_id("anchor_face_ids", person)?,
                parse_face_id("anchor_face_ids", face)?,
            ))
        })
        .collect::<Result<PersonAnchors, RequestError>>()?;
    Ok((PeopleEdit::try_from(record)?, anchors))
}

impl From<&PeopleEdit> for PeopleEditRecord {
    fn from(edit: &PeopleEdit) -> Self {
        let edit = match edit {
            PeopleEdit::Rename { person, name } => people_edit_record::Edit::Rename(RenamePersonRequest {
                person_id: person.to_string(),
                name: name.clone().unwrap_or_default(),
            }),
            PeopleEdit::Hide { person, hidden } => people_edit_record::Edit::Hide(HidePersonRequest {
                person_id: person.to_string(),
                hidden: *hidden,
            }),
            PeopleEdit::Merge { into, from } => people_edit_record::Edit::Merge(MergePeopleRequest {
                into_person_id: into.to_string(),
                from_person_ids: from.iter().map(ToString::to_string).collect(),
            }),
            PeopleEdit::MoveFaces { faces, to } => people_edit_record::Edit::MoveFaces(MoveFacesRequest {
                face_ids: faces.iter().map(ToString::to_string).collect(),
                to_person_id: to.map(|to| to.to_string()).unwrap_or_default(),
            }),
        };
        PeopleEditRecord {
            edit: Some(edit),
            ..PeopleEditRecord::default()
        }
    }
}

impl TryFrom<PeopleEditRecord> for PeopleEdit {
    type Error = RequestError;

    fn try_from(record: PeopleEditRecord) -> Result<Self, RequestError> {
        match record.edit {
            Some(people_edit_record::Edit::Rename(request)) => PeopleEdit::try_from(request),
            Some(people_edit_record::Edit::Hide(request)) => PeopleEdit::try_from(request),
            Some(people_edit_record::Edit::Merge(request)) => PeopleEdit::try_from(request),
            Some(people_edit_record::Edit::MoveFaces(request)) => PeopleEdit::try_from(request),
            None => Err(RequestError::MissingField {
                field: "edit",
                hint: "a people edit record holds one of rename, hide, merge or move_faces",
            }),
        }
    }
}

impl From<&PersonSummary> for Person {
    fn from(summary: &PersonSummary) -> Self {
        Person {
            person_id: summary.person_id.to_string(),
            name: summary.name.clone().unwrap_or_default(),
            hidden: summary.hidden,
            face_count: summary.face_count as u64,
            representative: summary
                .representative
                .as_ref()
                .map(|view| face(&view.face_id, &view.metadata, &view.person)),
        }
    }
}

impl From<&PeoplePage> for ListPeopleResponse {
    fn from(page: &PeoplePage) -> Self {
        ListPeopleResponse {
            persons: page.persons.iter().map(Person::from).collect(),
            total: page.total as u64,
            unassigned_faces: page.unassigned_faces as u64,
        }
    }
}

impl From<&PersonFaces> for GetPersonResponse {
    fn from(person: &PersonFaces) -> Self {
        GetPersonResponse {
            person: Some(Person::from(&person.summary)),
            faces: person
                .faces
                .iter()
                .map(|view| face(&view.face_id, &view.metadata, &view.person))
                .collect(),
            image_uris: person.images.clone(),
        }
    }
}

impl From<&ReclusterProgress> for ReclusterResponse {
    fn from(progress: &ReclusterProgress) -> Self {
        ReclusterResponse {
            finished: progress.finished,
            visited: progress.visited as u64,
            slots: progress.slots as u64,
            people: progress.people as u64,
            faces_joined: progress.placements.joined as u64,
            people_founded: progress.placements.founded as u64,
            faces_recruited: progress.placements.recruited as u64,
            faces_waiting: progress.placements.waiting as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_default_and_refuse_what_is_out_of_range() {
        assert_eq!(Page::checked(0, 0).expect("accepted"), Page { offset: 0, limit: 100 });
        assert_eq!(
            Page::checked(7, 1_000).expect("accepted"),
            Page {
                offset: 7,
                limit: 1_000
            }
        );
        let error = Page::checked(0, 1_001).expect_err("refused").to_string();
        assert!(
            error.contains("limit is 1001") && error.contains("0 to 1000"),
            "{error}"
        );
        let error = Page::checked(MAX_PAGE_OFFSET + 1, 10).expect_err("refused").to_string();
        assert!(error.starts_with("offset is 10000001"), "{error}");
    }

    #[test]
    fn edits_name_the_field_that_is_wrong() {
        let rename = |person_id: &str, name: &str| {
            PeopleEdit::try_from(RenamePersonRequest {
                person_id: person_id.into(),
                name: name.into(),
            })
        };
        let cleared = rename("00000000000000ab", "").expect("accepted");
        assert_eq!(
            cleared,
            PeopleEdit::Rename {
                person: PersonId(0xab),
                name: None
            }
        );
        let error = rename("ab", "Yao").expect_err("refused").to_string();
        assert!(error.starts_with("person_id: "), "{error}");
        let error = rename("00000000000000ab", &"x".repeat(201))
            .expect_err("refused")
            .to_string();
        assert!(error.starts_with("name: ") && error.contains("200 bytes"), "{error}");
        let error = rename("00000000000000ab", "   ").expect_err("refused").to_string();
        assert!(error.contains("blank"), "{error}");

        let merge = PeopleEdit::try_from(MergePeopleRequest {
            into_person_id: "0000000000000001".into(),
            from_person_ids: vec!["0000000000000001".into()],
        });
        let error = merge.expect_err("refused").to_string();
        assert!(
            error.starts_with("from_person_ids: ") && error.contains("itself"),
            "{error}"
        );
        let error = PeopleEdit::try_from(MergePeopleRequest {
            into_person_id: "0000000000000001".into(),
            from_person_ids: vec!["0000000000000002".into(); 101],
        })
        .expect_err("refused")
        .to_string();
        assert!(error.contains("101 entries"), "{error}");

        let split = PeopleEdit::try_from(MoveFacesRequest {
            face_ids: vec![format!("{:032x}", 5)],
            to_person_id: String::new(),
        })
        .expect("accepted");
        assert_eq!(
            split,
            PeopleEdit::MoveFaces {
                faces: vec![facedex_index::FaceId(5)],
                to: None
            }
        );
        let error = PeopleEdit::try_from(MoveFacesRequest {
            face_ids: Vec::new(),
            to_person_id: String::new(),
        })
        .expect_err("refused")
        .to_string();
        assert!(error.starts_with("face_ids: "), "{error}");
    }

    #[test]
    fn edit_records_round_trip_and_an_empty_one_is_refused() {
        let edits = [
            PeopleEdit::Rename {
                person: PersonId(7),
                name: Some("Yao Ming".into()),
            },
            PeopleEdit::Rename {
                person: PersonId(7),
                name: None,
            },
            PeopleEdit::Hide {
                person: PersonId(8),
                hidden: true,
            },
            PeopleEdit::Merge {
                into: PersonId(1),
                from: vec![PersonId(2), PersonId(3)],
            },
            PeopleEdit::MoveFaces {
                faces: vec![facedex_index::FaceId(9)],
                to: Some(PersonId(1)),
            },
            PeopleEdit::MoveFaces {
                faces: vec![facedex_index::FaceId(9)],
                to: None,
            },
        ];
        let anchors = PersonAnchors::from([
            (PersonId(1), facedex_index::FaceId(40)),
            (PersonId(7), facedex_index::FaceId(41)),
        ]);
        for edit in edits {
            let record = people_edit_record(&edit, &anchors);
            assert_eq!(logged_people_edit(record).expect("decodes"), (edit, anchors.clone()));
        }
        let error = PeopleEdit::try_from(PeopleEditRecord::default()).expect_err("refused");
        assert!(error.to_string().starts_with("edit is required"), "{error}");
    }

    #[test]
    fn recluster_budgets_default_and_are_bounded() {
        let budget = |budget_ms| {
            recluster_budget(&ReclusterRequest {
                budget_ms,
                restart: false,
            })
        };
        assert_eq!(budget(0).expect("accepted").0, Duration::from_secs(10));
        assert_eq!(budget(600_000).expect("accepted").0, Duration::from_secs(600));
        assert!(
            budget(600_001)
                .expect_err("refused")
                .to_string()
                .starts_with("budget_ms is 600001")
        );
    }
}
