// The console's JSON API (crates/facedex-web/src/api): one function per call. Credentials travel
// as the HttpOnly cookie signing in sets; errors come back as ApiError with the server's message.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function request(method, path, body) {
  const init = { method, headers: {}, credentials: 'same-origin' };
  if (body instanceof Blob) {
    init.body = body;
    init.headers['Content-Type'] = body.type || 'application/octet-stream';
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    let detail = {};
    try {
      detail = await response.json();
    } catch {
      // Not JSON: the status text says enough.
    }
    throw new ApiError(response.status, detail.code, detail.error || response.statusText);
  }
  return response.status === 204 ? null : response.json();
}

const id = (value) => encodeURIComponent(value);

/** Query parameters without the unset ones. */
function query(params) {
  const set = Object.entries(params).filter(([, value]) => value !== undefined && value !== null && value !== '');
  return new URLSearchParams(set).toString();
}

export const api = {
  info: () => request('GET', '/api/info'),
  signIn: (token) => request('POST', '/api/session', { token }),
  signOut: () => request('DELETE', '/api/session'),
  search: (photo, params) => request('POST', `/api/search?${query(params)}`, photo),
  people: (params) => request('GET', `/api/people?${query(params)}`),
  person: (personId, params) => request('GET', `/api/people/${id(personId)}?${query(params)}`),
  rename: (personId, name) => request('PUT', `/api/people/${id(personId)}/name`, { name }),
  hide: (personId, hidden) => request('PUT', `/api/people/${id(personId)}/hidden`, { hidden }),
  merge: (personId, fromPersonIds) =>
    request('POST', `/api/people/${id(personId)}/merge`, { from_person_ids: fromPersonIds }),
  moveFaces: (faceIds, toPersonId = '') =>
    request('POST', '/api/faces/move', { face_ids: faceIds, to_person_id: toPersonId }),
  face: (faceId) => request('GET', `/api/faces/${id(faceId)}`),
  pipeline: () => request('GET', '/api/pipeline'),
};

export const thumbnailUrl = (faceId) => `/api/faces/${id(faceId)}/thumbnail`;
export const photoUrl = (faceId) => `/api/faces/${id(faceId)}/photo`;
