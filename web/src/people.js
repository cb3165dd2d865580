// People: every person with a representative face and face count; a person's page with all its
// faces, where a user with the write token renames, hides, merges and splits.

import { api } from './api.js';
import { h, notify, openPhoto, thumbnail } from './dom.js';

const PAGE = 60;

export async function peoplePage(app) {
  const showHidden = h('input', { type: 'checkbox', id: 'show-hidden' });
  const grid = h('ul', { class: 'grid people', 'aria-label': 'People' });
  const summary = h('p', {});
  const more = h('button', { type: 'button', hidden: true }, 'Show more');
  app.replaceChildren(
    h('h1', {}, 'People'),
    summary,
    h('p', {}, showHidden, h('label', { for: 'show-hidden' }, ' Show hidden people')),
    grid,
    more,
  );
  let offset = 0;
  const load = async (reset) => {
    if (reset) {
      offset = 0;
      grid.replaceChildren();
    }
    try {
      const page = await api.people({ offset, limit: PAGE, include_hidden: showHidden.checked });
      summary.textContent = `${page.total} people; ${page.unassigned_faces} faces in no person yet.`;
      grid.append(...page.persons.map(personTile));
      offset += page.persons.length;
      more.hidden = offset >= page.total;
    } catch (error) {
      notify(error.message, true);
    }
  };
  showHidden.addEventListener('change', () => load(true));
  more.addEventListener('click', () => load(false));
  await load(true);
}

function personTile(person) {
  const name = person.name || 'Unnamed person';
  const faces = `${person.face_count} ${person.face_count === 1 ? 'face' : 'faces'}`;
  return h(
    'li',
    { dataset: { personId: person.person_id } },
    h(
      'a',
      { class: 'tile', href: `#/people/${person.person_id}`, 'aria-label': `${name}, ${faces}` },
      person.representative ? thumbnail(person.representative, `Face of ${name}`) : h('span', { class: 'blank' }),
      h('span', { class: 'name' }, name, person.hidden ? ' (hidden)' : ''),
      h('span', { class: 'count' }, faces),
    ),
  );
}

export async function personPage(app, info, personId) {
  let answer;
  try {
    answer = await api.person(personId, { limit: 1000 });
  } catch (error) {
    app.replaceChildren(h('h1', {}, 'Person'), h('p', { class: 'error' }, error.message));
    return;
  }
  const { person, faces } = answer;
  const selected = new Set();
  const title = person.name || 'Unnamed person';
  const edits = info.can_write ? editForms(person, selected) : h('p', {}, 'Sign in with the write token to edit people.');
  app.replaceChildren(
    h('p', {}, h('a', { href: '#/people' }, '← People')),
    h('h1', {}, title),
    h('p', {}, `${person.face_count} faces${person.hidden ? ', hidden from the list' : ''}.`),
    edits,
    h(
      'ul',
      { class: 'grid faces', 'aria-label': `Faces of ${title}` },
      faces.map((face) => faceTile(face, title, selected, info.can_write)),
    ),
  );
}

function faceTile(face, title, selected, canWrite) {
  const box = h('input', {
    type: 'checkbox',
    id: `pick-${face.face_id}`,
    onchange: (event) => (event.target.checked ? selected.add(face.face_id) : selected.delete(face.face_id)),
  });
  return h(
    'li',
    { dataset: { faceId: face.face_id } },
    h(
      'button',
      { type: 'button', class: 'tile', onclick: () => openPhoto(face), 'aria-label': `Open ${face.photo_name}` },
      thumbnail(face, `Face of ${title} in ${face.photo_name}`),
      h('span', { class: 'path', title: face.image_uri }, face.photo_name),
    ),
    canWrite ? h('label', { for: box.id, class: 'pick' }, box, ' Select') : null,
  );
}

function editForms(person, selected) {
  const done = (message) => (updated) => {
    notify(message(updated));
    window.dispatchEvent(new HashChangeEvent('hashchange'));
  };
  const failed = (error) => notify(error.message, true);

  const name = h('input', { id: 'person-name', value: person.name, maxlength: 200, autocomplete: 'off' });
  const rename = h(
    'form',
    {
      class: 'inline',
      onsubmit: (event) => {
        event.preventDefault();
        api.rename(person.person_id, name.value.trim()).then(done((p) => `Named ${p.name || 'nobody'}.`), failed);
      },
    },
    h('label', { for: 'person-name' }, 'Name'),
    name,
    h('button', { type: 'submit' }, 'Save name'),
  );
  const hide = h(
    'button',
    {
      type: 'button',
      onclick: () =>
        api.hide(person.person_id, !person.hidden).then(done((p) => (p.hidden ? 'Hidden.' : 'Shown again.')), failed),
    },
    person.hidden ? 'Show in the list' : 'Hide from the list',
  );
  const others = h('select', { id: 'merge-from' }, h('option', { value: '' }, 'Choose a person…'));
  api
    .people({ limit: 1000 })
    .then((page) =>
      page.persons
        .filter((other) => other.person_id !== person.person_id)
        .forEach((other) =>
          others.append(h('option', { value: other.person_id }, `${other.name || 'Unnamed'} (${other.face_count} faces)`)),
        ),
    )
    .catch(failed);
  const merge = h(
    'form',
    {
      class: 'inline',
      onsubmit: (event) => {
        event.preventDefault();
        if (!others.value) return;
        api.merge(person.person_id, [others.value]).then(done((p) => `Merged: ${p.face_count} faces now.`), failed);
      },
    },
    h('label', { for: 'merge-from' }, 'Merge into this person'),
    others,
    h('button', { type: 'submit' }, 'Merge'),
  );
  const split = h(
    'button',
    {
      type: 'button',
      onclick: () => {
        if (selected.size === 0) return notify('Select the faces to split off first.', true);
        api.moveFaces([...selected]).then((created) => {
          notify(`Split ${selected.size} faces into a new person.`);
          location.hash = `#/people/${created.person_id}`;
        }, failed);
      },
    },
    'Split selected faces into a new person',
  );
  return h('section', { class: 'edits', 'aria-label': 'Edit this person' }, rename, hide, merge, split);
}
