//! A user's people edit on an indexer: checked against its index, written to the one-partition
//! people-edits topic with the faces it had applied (a watermark) and the faces that identify
//! the persons it names (anchors), and answered once this indexer has applied it from there
//! (so the caller reads its own write). Every indexer applies the topic in the same order,
//! each edit once it has applied the faces up to the watermark, so replicas make the same
//! edits, and a replay from a snapshot's offsets makes them again.

use std::sync::Arc;
use std::time::Duration;

use facedex_index::{FaceStore, PeopleEdit, PersonId};
use facedex_proto::AppliedOffset;
use facedex_proto::people_conversions::people_edit_record;
use prost::Message as _;
use rdkafka::producer::FutureProducer;

use crate::client::{producer, publish_record, wait_until_applied};
use crate::config::KafkaConfig;
use crate::error::Result;

/// The people-edits topic as a People service writes it.
pub struct PeopleEditLog {
    producer: FutureProducer,
    topic: String,
    faces_topic: String,
    store: Arc<FaceStore>,
    /// How long an edit may take to come back from the topic.
    wait_limit: Duration,
}

impl PeopleEditLog {
    /// A log over `config`'s people-edits topic, for the indexer of `store`; an edit not
    /// applied within `wait_limit` of being written is answered with an error (it is still
    /// applied when it arrives).
    pub fn new(config: &KafkaConfig, store: Arc<FaceStore>, wait_limit: Duration) -> Result<Self> {
        Ok(Self {
            producer: producer(config)?,
            topic: config.topics.people_edits.clone(),
            faces_topic: config.topics.faces.clone(),
            store,
            wait_limit,
        })
    }

    /// Checks `edit`, writes it to the topic, waits until this indexer applied it, and returns
    /// the person it left in place.
    pub async fn submit(&self, edit: &PeopleEdit) -> Result<PersonId> {
        let anchors = self.store.index().check_people_edit(edit)?;
        let mut record = people_edit_record(edit, &anchors);
        // What this indexer has applied of the faces: every reader waits for as much.
        let applied = self.store.index().applied_offsets();
        record.faces_applied = applied
            .get(&self.faces_topic)
            .into_iter()
            .flatten()
            .map(|(partition, next_offset)| AppliedOffset {
                topic: self.faces_topic.clone(),
                partition: *partition,
                next_offset: *next_offset,
            })
            .collect();
        let payload = record.encode_to_vec();
        let (partition, offset) = publish_record(&self.producer, &self.topic, "people", Some(&payload), None).await?;
        wait_until_applied(
            &self.store,
            "people edit",
            &self.topic,
            &[(partition, offset)],
            self.wait_limit,
        )
        .await?;
        Ok(self.person_left_in_place(edit)?)
    }

    /// The person an applied edit left in place: the one it names, or for a split the new
    /// person of its faces.
    fn person_left_in_place(&self, edit: &PeopleEdit) -> facedex_index::Result<PersonId> {
        let named = match edit {
            PeopleEdit::Rename { person, .. } | PeopleEdit::Hide { person, .. } => *person,
            PeopleEdit::Merge { into, .. } => *into,
            PeopleEdit::MoveFaces { to: Some(to), .. } => *to,
            PeopleEdit::MoveFaces { faces, to: None } => {
                let first = faces
                    .first()
                    .ok_or_else(|| facedex_index::IndexError::InvalidPeopleEdit {
                        reason: "a move names no face".into(),
                    })?;
                match self.store.index().person_status(first)? {
                    facedex_index::PersonStatus::Assigned(person) => person.person_id,
                    _ => {
                        return Err(facedex_index::IndexError::PeopleEditConflict {
                            reason: format!("face {first} is in no person after the split"),
                        });
                    }
                }
            }
        };
        Ok(named)
    }
}
