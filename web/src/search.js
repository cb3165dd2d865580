// Search by photo: drop or pick a photo, see its faces boxed, pick one, see the indexed faces
// most like it; a threshold slider and attribute filters narrow the hits.

import { api } from './api.js';
import { h, notify, openPhoto, percent, personLabel, thumbnail } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';

export function searchPage(app, info) {
  let photo = null;
  let answer = null;
  let selected = 0;
  let previewUrl = null;

  const threshold = h('input', {
    type: 'range',
    id: 'threshold',
    min: 0,
    max: 1,
    step: 0.01,
    value: info.default_min_score,
  });
  const thresholdValue = h('output', { for: 'threshold' }, percent(info.default_min_score));
  const minAge = h('input', { type: 'number', id: 'min-age', min: 0, max: 120, inputmode: 'numeric' });
  const maxAge = h('input', { type: 'number', id: 'max-age', min: 0, max: 120, inputmode: 'numeric' });
  const gender = h(
    'select',
    { id: 'gender' },
    h('option', { value: '' }, 'Any'),
    h('option', { value: 'female' }, 'Female'),
    h('option', { value: 'male' }, 'Male'),
  );
  const minQuality = h('input', { type: 'range', id: 'min-quality', min: 0, max: 1, step: 0.05, value: 0 });
  const fileInput = h('input', { type: 'file', id: 'photo', accept: 'image/*', class: 'visually-hidden' });
  const drop = h(
    'div',
    { class: 'drop', role: 'button', tabindex: 0, 'aria-describedby': 'drop-help' },
    h('label', { for: 'photo', class: 'button' }, 'Choose a photo'),
    h('p', { id: 'drop-help' }, 'or drop one here. Its faces are searched in the index.'),
  );
  const preview = h('div', { class: 'preview' });
  const facesNav = h('div', { class: 'query-faces', role: 'group', 'aria-label': 'Faces in your photo' });
  const hits = h('ul', { class: 'grid hits', 'aria-label': 'Matching faces', 'aria-live': 'polite' });

  const controls = h(
    'fieldset',
    { class: 'filters', disabled: !info.searches_photos },
    h('legend', {}, 'Filters'),
    h('label', { for: 'threshold' }, 'Similarity at least ', thresholdValue),
    threshold,
    h('label', { for: 'min-age' }, 'Age from'),
    minAge,
    h('label', { for: 'max-age' }, 'Age to'),
    maxAge,
    h('label', { for: 'gender' }, 'Gender'),
    gender,
    h('label', { for: 'min-quality' }, 'Quality at least'),
    minQuality,
  );

  app.replaceChildren(
    h('h1', {}, 'Search by photo'),
    info.searches_photos
      ? drop
      : h('p', { class: 'error' }, 'This server was started without the face models (--no-image-search): it cannot search by photo.'),
    fileInput,
    h('div', { class: 'search-layout' }, h('div', {}, preview, facesNav, controls), h('section', { 'aria-label': 'Results' }, hits)),
  );

  const pick = (file) => {
    if (!file) return;
    photo = file;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    selected = 0;
    run();
  };
  fileInput.addEventListener('change', () => pick(fileInput.files[0]));
  drop.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' || event.key === ' ') {
      event.preventDefault();
      fileInput.click();
    }
  });
  drop.addEventListener('dragover', (event) => {
    event.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (event) => {
    event.preventDefault();
    drop.classList.remove('over');
    pick(event.dataTransfer.files[0]);
  });
  threshold.addEventListener('input', () => {
    thresholdValue.textContent = percent(Number(threshold.value));
  });
  let pending = null;
  for (const input of [threshold, minAge, maxAge, gender, minQuality]) {
    input.addEventListener('change', () => {
      clearTimeout(pending);
      pending = setTimeout(run, 150);
    });
  }

  async function run() {
    if (!photo) return;
    notify('Searching…');
    try {
      answer = await api.search(photo, {
        min_score: threshold.value,
        limit: 48,
        min_age: minAge.value,
        max_age: maxAge.value,
        gender: gender.value,
        min_quality: Number(minQuality.value) > 0 ? minQuality.value : undefined,
      });
      // The largest face first: the one a user most likely means.
      answer.faces.sort((a, b) => area(b.box) - area(a.box));
      selected = Math.min(selected, Math.max(answer.faces.length - 1, 0));
      notify(answer.faces.length ? '' : 'No face found in this photo.');
      render();
    } catch (error) {
      notify(error.message, true);
    }
  }

  function render() {
    const image = h('img', { src: previewUrl, alt: 'Your photo' });
    const overlay = document.createElementNS(SVG, 'svg');
    overlay.setAttribute('aria-hidden', 'true');
    image.addEventListener('load', () => {
      overlay.setAttribute('viewBox', `0 0 ${image.naturalWidth} ${image.naturalHeight}`);
      answer.faces.forEach((face, index) => {
        const [x1, y1, x2, y2] = face.box;
        const rect = document.createElementNS(SVG, 'rect');
        Object.entries({ x: x1, y: y1, width: x2 - x1, height: y2 - y1 }).forEach(([k, v]) => rect.setAttribute(k, v));
        rect.setAttribute('class', index === selected ? 'face selected' : 'face');
        rect.addEventListener('click', () => choose(index));
        overlay.append(rect);
      });
    });
    preview.replaceChildren(h('div', { class: 'framed' }, image, overlay));
    facesNav.replaceChildren(
      ...answer.faces.map((face, index) =>
        h(
          'button',
          {
            type: 'button',
            'aria-pressed': index === selected ? 'true' : 'false',
            onclick: () => choose(index),
          },
          `Face ${index + 1} (${face.hits.length} ${face.hits.length === 1 ? 'match' : 'matches'})`,
        ),
      ),
    );
    const face = answer.faces[selected];
    hits.replaceChildren(...(face ? face.hits.map(hitTile) : []));
    if (face && face.hits.length === 0) hits.append(h('li', { class: 'empty' }, 'No indexed face is this similar.'));
  }

  function choose(index) {
    selected = index;
    render();
  }
}

function hitTile(hit) {
  const { face } = hit;
  const label = personLabel(face);
  return h(
    'li',
    { dataset: { faceId: face.face_id } },
    h(
      'button',
      {
        type: 'button',
        class: 'tile',
        onclick: () => openPhoto(face),
        'aria-label': `${label}, ${percent(hit.similarity)} similar, in ${face.photo_name}: open the photo`,
      },
      thumbnail(face, `Face of ${label}`),
      h('span', { class: 'score' }, percent(hit.similarity)),
      h('span', { class: 'name' }, label),
      h('span', { class: 'path', title: face.image_uri }, face.photo_name),
    ),
  );
}

const area = ([x1, y1, x2, y2]) => (x2 - x1) * (y2 - y1);
